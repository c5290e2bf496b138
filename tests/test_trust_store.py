"""Trust-store changes in constant time: a new X.509 credential or verified device CA is added to
the TLS trust store by itself; removals rebuild it once per batch (storage.certificates and
protocols.tls, over the triggers of migration 0015)."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator

import pytest

from fleetgate.core.model import Credentials, CredentialsType
from fleetgate.protocols.tls import DeviceTls
from fleetgate.storage.certificates import CertificateWatch, announced
from tests import pki
from tests.support import pre_provision


def der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem)


def test_an_added_anchor_goes_into_the_store_in_use(tmp_path) -> None:
    cert, key = pki.self_signed(tmp_path)
    tls = DeviceTls(cert, key)
    tls.set_anchors([der(pki.ca("CA 0").pem)])
    in_use = tls.handshake_context
    tls.add_anchors([der(pki.ca(f"CA {n}").pem) for n in (1, 2)])
    assert tls.handshake_context is in_use and in_use.cert_store_stats()["x509_ca"] == 3
    tls.reload()  # a rebuild keeps the added ones
    assert tls.handshake_context is not in_use and tls.handshake_context.cert_store_stats()["x509_ca"] == 3
    tls.set_anchors([])
    assert tls.handshake_context.cert_store_stats()["x509_ca"] == 0


def test_a_device_signed_by_an_added_anchor_completes_its_handshake(tmp_path) -> None:
    cert, key = pki.self_signed(tmp_path)
    tls = DeviceTls(cert, key)
    tls.set_anchors([])
    device_ca = pki.ca("Added CA")
    device = pki.leaf(device_ca, CN="dev")
    tls.add_anchors([der(device_ca.pem)])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.load_cert_chain(*device.files(tmp_path, "device"))
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = tls.context.wrap_bio(server_in, server_out, server_side=True)
    peer = client.wrap_bio(client_in, client_out)
    for _ in range(10):
        for side in (peer, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    assert server.getpeercert(binary_form=True) == der(device.pem)


def test_notifications_are_parsed() -> None:
    ca = pki.ca("Parsed")
    assert announced("+a:" + ca.pem) == der(ca.pem)
    assert announced("+c:" + pki.pem_body(ca.pem)) == der(ca.pem)
    assert announced("*") is None and announced("") is None and announced("+c:%%") is None


class Recorder:
    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, list[bytes]]] = asyncio.Queue()

    def changed(self, certificates: list[bytes]) -> None:
        self.events.put_nowait(("rebuild", certificates))

    def added(self, certificates: list[bytes]) -> None:
        self.events.put_nowait(("add", certificates))

    async def next(self) -> tuple[str, list[bytes]]:
        async with asyncio.timeout(10):
            return await self.events.get()


@pytest.fixture
async def watched(database_url) -> AsyncIterator[tuple[CertificateWatch, Recorder]]:
    recorder = Recorder()
    watch = CertificateWatch(database_url, recorder.changed, recorder.added)
    await watch.start()
    assert (await recorder.next())[0] == "rebuild"  # the first load
    yield watch, recorder
    await watch.stop()


async def x509_device(gateway, tenant) -> tuple[str, bytes]:
    pem = pki.self_signed_pem("dev-" + secrets.token_hex(4))
    device = await pre_provision(gateway, tenant, "x509-" + secrets.token_hex(4),
                                 Credentials(CredentialsType.X509_CERTIFICATE, pki.pem_body(pem)))
    return device.id, der(pem)


async def test_a_new_credential_is_added_alone_and_removals_rebuild_once(gateway, tenant, watched) -> None:
    watch, recorder = watched
    devices = [await x509_device(gateway, tenant) for _ in range(4)]
    for _, certificate in devices:
        assert await recorder.next() == ("add", [certificate])
    assert watch.rebuilds == 1
    # four removals in one transaction: one rebuild, without them
    await gateway.services.pool.execute("DELETE FROM devices WHERE id = ANY($1)", [d for d, _ in devices])
    kind, certificates = await recorder.next()
    assert kind == "rebuild" and not {c for _, c in devices} & set(certificates)
    _, later = await x509_device(gateway, tenant)  # everything before it was applied
    assert await recorder.next() == ("add", [later])
    assert watch.rebuilds == 2


async def test_a_verified_ca_is_added_alone_and_an_unverified_one_rebuilds(gateway, tenant, watched) -> None:
    watch, recorder = watched
    ca = pki.ca("Watched CA " + secrets.token_hex(4))
    ca_id = secrets.token_hex(12)
    await gateway.services.pool.execute(
        "INSERT INTO device_cas (id, project_id, pem, fingerprint, subject, cn_name, owner, verify_code,"
        " not_before, not_after, created_at) VALUES ($1, $2, $3, $4, '\\x00', 'cn', 'owner', 'code', 0, 1, 0)",
        ca_id, tenant.project_id, ca.pem, secrets.token_hex(32))
    await gateway.services.pool.execute("UPDATE device_cas SET verified = true WHERE id = $1", ca_id)
    assert await recorder.next() == ("add", [der(ca.pem)])
    await gateway.services.pool.execute("UPDATE device_cas SET provision_enable = true WHERE id = $1", ca_id)
    await gateway.services.pool.execute("UPDATE device_cas SET verified = false WHERE id = $1", ca_id)
    kind, certificates = await recorder.next()  # the unrelated change announced nothing
    assert kind == "rebuild" and der(ca.pem) not in certificates
    assert watch.rebuilds == 2
