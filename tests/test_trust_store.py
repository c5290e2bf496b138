"""Trust-store changes in constant time: a new X.509 credential or verified device CA is added to
the TLS trust store by itself; removals rebuild it once per batch (storage.certificates and
protocols.tls, over the triggers of migration 0015). Credentials live in a hashed directory that
OpenSSL reads by subject (protocols.anchor_directory)."""

from __future__ import annotations

import asyncio
import datetime
import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from fleetgate.core.model import Credentials, CredentialsType
from fleetgate.protocols.anchor_directory import AnchorDirectory, subject_hash
from fleetgate.protocols.tls import DeviceTls
from fleetgate.storage.certificates import Anchors, CertificateWatch, announced
from tests import pki
from tests.support import pre_provision


def der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem)


def device(subject: x509.Name | str) -> pki.Issued:
    """A device's self-signed certificate (an X509_CERTIFICATE credential) and its key."""
    subject = pki.name(CN=subject) if isinstance(subject, str) else subject
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return pki.Issued(certificate, key)


def handshake(tls: DeviceTls, presented: pki.Issued, directory: Path) -> bytes | None:
    """The certificate the server verified from a device presenting ``presented``, None if refused."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.load_cert_chain(*presented.files(directory, "device-" + secrets.token_hex(4)))
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = tls.context.wrap_bio(server_in, server_out, server_side=True)
    peer = client.wrap_bio(client_in, client_out)
    for _ in range(10):
        for side in (peer, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return None
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    return server.getpeercert(binary_form=True)


A = x509.NameAttribute
SUBJECTS = {
    "plain": pki.name(CN="device-1"),
    "case and spaces": pki.name(CN="  Device \t  ONE\tx  "),
    "several RDNs, non-ASCII": pki.name(C="DE", O="Acme  GmbH", CN="Gerät Ünïcødé 設備"),
    "multi-valued RDN": x509.Name.from_rfc4514_string("CN=Zed+O=Alpha+OU=Mid,C=US"),
    "PrintableString": x509.Name([A(NameOID.COMMON_NAME, "Printable Name", _ASN1Type.PrintableString)]),
    "BMPString": x509.Name([A(NameOID.COMMON_NAME, "BMP Ärger 設備", _ASN1Type.BMPString)]),
    "UniversalString": x509.Name([A(NameOID.COMMON_NAME, "Universal Ä 𝄞", _ASN1Type.UniversalString)]),
    "T61String": x509.Name([A(NameOID.COMMON_NAME, "T61 Café", _ASN1Type.T61String)]),
    "IA5String e-mail": x509.Name([A(NameOID.EMAIL_ADDRESS, "Dev@Example.COM")]),
    "non-ASCII spaces kept": x509.Name([A(NameOID.COMMON_NAME, "MiXeD\u00a0Space\u3000End")]),
    "long": pki.name(CN="x" * 64, OU="y" * 64, ST="z" * 64, O="w" * 64),
    "empty": x509.Name([]),
}


@pytest.mark.parametrize("subject", SUBJECTS.values(), ids=SUBJECTS.keys())
def test_the_subject_hash_is_openssls(subject: x509.Name) -> None:
    certificate = der(device(subject).pem)
    openssl = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject_hash"],
                             input=certificate, capture_output=True, check=True, timeout=30)
    assert f"{subject_hash(certificate):08x}" == openssl.stdout.decode().strip()


def test_same_subject_hashes_take_the_next_suffix_and_a_removal_closes_the_gap() -> None:
    directory = AnchorDirectory()
    first, second, third = (der(device("same").pem) for _ in range(3))
    bucket = f"{subject_hash(first):08x}"
    assert not directory.add([first]).stale
    assert directory.add([second, third]).stale  # a store that read "same" would not look again
    assert sorted(os.listdir(directory.path)) == [".lock", f"{bucket}.0", f"{bucket}.1", f"{bucket}.2"]
    assert directory.replace([second, third]).stale
    assert sorted(os.listdir(directory.path)) == [".lock", f"{bucket}.0", f"{bucket}.1"]
    assert {Path(directory.path, f"{bucket}.{n}").read_text() for n in (0, 1)} == {
        ssl.DER_cert_to_PEM_cert(c) for c in (second, third)}
    assert not directory.replace([second, third]).stale and len(directory) == 2
    assert not directory.add([b"\x30\x03\x02\x01\x01", first[:40]]).stale and len(directory) == 2  # left out
    path = directory.path
    directory.close()
    assert not os.path.exists(path)


def test_a_directory_left_by_a_dead_process_is_deleted_and_a_live_ones_kept(tmp_path) -> None:
    live = AnchorDirectory(str(tmp_path))
    live.add([der(device("live").pem)])
    crashed = subprocess.run(
        [sys.executable, "-c", "import os, sys; from fleetgate.protocols.anchor_directory import AnchorDirectory;"
         " kept = AnchorDirectory(sys.argv[1]); print(kept.path, flush=True); os._exit(9)", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=60)
    left = crashed.stdout.strip()
    assert os.path.isdir(left)
    AnchorDirectory(str(tmp_path)).close()
    assert not os.path.exists(left) and len(os.listdir(live.path)) == 2  # its lock and its anchor
    live.close()
    assert os.listdir(tmp_path) == []


def test_an_added_anchor_goes_into_the_store_in_use(tmp_path) -> None:
    cert, key = pki.self_signed(tmp_path)
    tls = DeviceTls(cert, key)
    tls.set_anchors([der(pki.ca("CA 0").pem)])
    in_use = tls.handshake_context
    tls.add_anchors([der(pki.ca(f"CA {n}").pem) for n in (1, 2)], [der(device("added").pem)])
    assert tls.handshake_context is in_use and in_use.cert_store_stats()["x509_ca"] == 3
    tls.reload()  # a rebuild keeps the added ones
    assert tls.handshake_context is not in_use and tls.handshake_context.cert_store_stats()["x509_ca"] == 3
    tls.set_anchors([])
    assert tls.handshake_context.cert_store_stats()["x509_ca"] == 0


def test_a_credential_is_one_file_read_at_the_handshake_and_a_removal_rebuilds(tmp_path) -> None:
    cert, key = pki.self_signed(tmp_path)
    tls = DeviceTls(cert, key)
    tls.set_anchors([], [der(device(f"other-{n}").pem) for n in range(50)])
    stranger, known = device("stranger"), device("known")
    assert handshake(tls, stranger, tmp_path) is None
    in_use = tls.handshake_context
    tls.add_anchors([], [der(known.pem)])
    assert tls.handshake_context is in_use and in_use.cert_store_stats()["x509"] == 0  # nothing read yet
    assert handshake(tls, known, tmp_path) == der(known.pem)
    assert in_use.cert_store_stats()["x509"] == 1  # read when a device presented it
    tls.set_anchors([], [der(device(f"other-{n}").pem) for n in range(50)])
    assert tls.handshake_context is not in_use  # the old store still holds it
    assert handshake(tls, known, tmp_path) is None
    tls.close()
    assert handshake(tls, device("other-0"), tmp_path) is None


def test_a_new_certificate_under_a_subject_already_read_is_trusted(tmp_path) -> None:
    cert, key = pki.self_signed(tmp_path)
    tls = DeviceTls(cert, key)
    old, new = device("re-provisioned"), device("re-provisioned")
    tls.set_anchors([], [der(old.pem)])
    assert handshake(tls, old, tmp_path) == der(old.pem)
    assert handshake(tls, new, tmp_path) is None
    tls.add_anchors([], [der(new.pem)])
    assert handshake(tls, new, tmp_path) == der(new.pem)
    tls.set_anchors([], [der(new.pem)])  # the old one's file removed, the new one's moved into its place
    assert handshake(tls, new, tmp_path) == der(new.pem) and handshake(tls, old, tmp_path) is None


def test_a_device_signed_by_an_added_anchor_completes_its_handshake(tmp_path) -> None:
    cert, key = pki.self_signed(tmp_path)
    tls = DeviceTls(cert, key)
    tls.set_anchors([])
    device_ca = pki.ca("Added CA")
    issued = pki.leaf(device_ca, CN="dev")
    tls.add_anchors([der(device_ca.pem)])
    assert handshake(tls, issued, tmp_path) == der(issued.pem)


def test_notifications_are_parsed() -> None:
    ca = pki.ca("Parsed")
    assert announced("+a:" + ca.pem) == Anchors([der(ca.pem)], [])
    assert announced("+c:" + pki.pem_body(ca.pem)) == Anchors([], [der(ca.pem)])
    assert announced("*") is None and announced("") is None and announced("+c:%%") is None


class Recorder:
    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, list[bytes]]] = asyncio.Queue()

    def changed(self, cas: list[bytes], credentials: list[bytes]) -> None:
        self.events.put_nowait(("rebuild", cas + credentials))

    def added(self, cas: list[bytes], credentials: list[bytes]) -> None:
        self.events.put_nowait(("add", cas + credentials))

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
