"""Certificate auto-registration end to end: real TLS listeners (MQTTS and HTTPS), real clients
(mosquitto_pub, aiohttp with a client certificate, openssl s_client, raw TLS sockets), a PKI
built in-process, and the negative catalogue refused with nothing created."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from prometheus_client import REGISTRY
from fleetgate.protocols.mqtt.packets import ConnAck
from tests import pki
from tests.autoregistration_support import (
    DAY, SUBJECT, audit_reasons, devices_in, mosquitto_pub, publish_as, url_of,
)
from tests.certificates_support import ready_ca, static_template, upload, verify
from tests.management_client import Management
from tests.mqtt_raw import RawMqtt


@pytest.fixture
def api(tls_api: Management) -> Management:
    """This module's tenant lives on the TLS gateway."""
    return tls_api


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
async def test_first_connection_registers_the_device_and_its_telemetry_is_stored(tls, api, tmp_path, version):
    gw, server_cert = tls
    ca, _ = await ready_ca(api)
    device = pki.leaf(ca, CN="meter-1", **SUBJECT)
    code, out = await publish_as(gw, server_cert, device, tmp_path, version=version)
    assert code == 0, out
    device_id = f"{api.tenant.product_id}_meter-1"
    assert await devices_in(gw, api.tenant.project_id) == [device_id]
    row = await gw.services.pool.fetchrow(
        "SELECT t.long_v, t.dbl_v FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key "
        "WHERE t.device_id = $1 AND k.key = 'temperature'", device_id)
    assert row is not None and (row["long_v"] or row["dbl_v"]) == 21
    registration = await gw.services.pool.fetchrow("SELECT * FROM device_registrations WHERE device_id = $1",
                                                   device_id)
    assert registration["node_id"] == "meter-1" and registration["policy_ids"] == ["5c90fa7d3c4e4405e8525079"]
    assert registration["tags"] == [["Acme", "Meters"]]
    assert await audit_reasons(gw, api.tenant.project_id) == [("SUCCESS", "CREATED")]
    # Later connections authenticate by the fingerprint; no second device.
    code, out = await publish_as(gw, server_cert, device, tmp_path, version=version)
    assert code == 0, out
    assert await devices_in(gw, api.tenant.project_id) == [device_id]


async def test_an_intermediate_ca_is_an_anchor_and_the_chain_is_accepted(tls, api, tmp_path):
    gw, server_cert = tls
    root = pki.ca("Root " + api.tenant.project_id)
    template = await static_template(api)
    intermediate = pki.ca("Intermediate " + api.tenant.project_id, parent=root)
    record = await upload(api, intermediate)
    await verify(api, intermediate, record)
    await api.call("PUT", f"/certificates/{record['certificate_id']}",
                   json={"provision_enable": True, "template_id": template["template_id"]})
    code, out = await publish_as(gw, server_cert, pki.leaf(intermediate, CN="chained", **SUBJECT), tmp_path,
                                 intermediate, root)
    assert code == 0, out


NEGATIVE = ["expired", "not_yet_valid", "unknown_ca", "fake_root", "revoked", "ca_unverified",
            "provisioning_disabled", "template_unbound", "missing_parameter"]
# Refused inside the TLS handshake by OpenSSL (the CA is not an anchor, or the dates are wrong):
# the gateway's code never sees these certificates, so there is no audit record for them (they are
# counted by reason: tests/test_tls_resumption.py).
IN_HANDSHAKE = {"expired", "not_yet_valid", "unknown_ca", "fake_root", "ca_unverified"}


@pytest.mark.parametrize("case", NEGATIVE)
async def test_the_negative_catalogue_is_refused_with_nothing_created(tls, api, tmp_path, case):
    gw, server_cert = tls
    ca, record = await ready_ca(api)
    # Make sure the CA is trusted by now: a good device of it gets in.
    code, out = await publish_as(gw, server_cert, pki.leaf(ca, CN="good", **SUBJECT), tmp_path)
    assert code == 0, out
    before = set(await devices_in(gw, api.tenant.project_id))
    path = f"/certificates/{record['certificate_id']}"
    signer = ca
    subject = dict(SUBJECT, CN="bad-" + case.replace("_", "-"))
    if case == "unknown_ca":
        signer = pki.ca("Stranger")
    elif case == "fake_root":
        signer = pki.ca("CA " + api.tenant.project_id)  # the registered CA's name, another key
    elif case == "ca_unverified":
        signer = pki.ca("Unverified " + api.tenant.project_id)
        other = await upload(api, signer)
        await gw.services.pool.execute("UPDATE device_cas SET template_id = $1, provision_enable = true WHERE id = $2",
                                       record["template_id"], other["certificate_id"])
    if case == "expired":
        device = pki.leaf(signer, not_before=-2 * DAY, not_after=-DAY, **subject)
    elif case == "not_yet_valid":
        device = pki.leaf(signer, not_before=DAY, not_after=2 * DAY, **subject)
    elif case == "missing_parameter":
        device = pki.leaf(signer, **{k: v for k, v in subject.items() if k != "ST"})
    else:
        device = pki.leaf(signer, **subject)
    if case == "revoked":
        assert (await api.call("PUT", path + "/crl", json={"crl": pki.crl(ca, device)})).status == 200
    elif case == "provisioning_disabled":
        assert (await api.call("PUT", path, json={"provision_enable": False})).status == 200
    elif case == "template_unbound":
        assert (await api.call("PUT", path, json={"provision_enable": False, "template_id": None})).status == 200
    failures_before = _failures(case)
    code, out = await publish_as(gw, server_cert, device, tmp_path, attempts=1)
    assert code != 0, out
    assert set(await devices_in(gw, api.tenant.project_id)) == before
    if case in IN_HANDSHAKE:
        assert "not authori" not in out.lower()
    else:
        assert "not authori" in out.lower(), out  # CONNACK 5: all the device learns
        reason = case.upper()
        assert ("FAILURE", reason) in await audit_reasons(gw, api.tenant.project_id)
        assert _failures(case) == failures_before + 1


def _failures(case: str) -> float:
    return REGISTRY.get_sample_value("gateway_auto_registration_total",
                                     {"outcome": "FAILURE", "reason": case.upper()}) or 0.0


async def test_no_client_certificate_is_not_authorized(tls):
    gw, server_cert = tls
    code, out = await mosquitto_pub(gw, server_cert, "-i", "no-cert-client")
    # ThingsBoard's answer to a client id without credentials: identifier rejected (3.1.1 code 2).
    assert code != 0 and ("not authori" in out.lower() or "identifier rejected" in out.lower()), out


async def test_mqtt5_refusal_is_0x87(tls, api, tmp_path):
    gw, server_cert = tls
    ca, record = await ready_ca(api)
    await api.call("PUT", f"/certificates/{record['certificate_id']}", json={"provision_enable": False})
    device = pki.leaf(ca, CN="refused5", **SUBJECT)
    context = _client_context(server_cert, device, tmp_path)
    port = int(url_of(gw, "mqtts").rsplit(":", 1)[1])
    for _ in range(20):  # the anchors follow the CA's verification
        try:
            client = RawMqtt(*await asyncio.open_connection("127.0.0.1", port, ssl=context), 5)
            break
        except (ssl.SSLError, ConnectionError):
            continue
    connack = await client.connect(client_id="refused5")
    assert isinstance(connack, ConnAck) and connack.reason_code == 0x87
    client.writer.close()


def _client_context(server_cert: str, device: pki.Issued, directory: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=server_cert)
    cert, key = device.files(directory, f"client-{device.certificate.serial_number:x}")
    context.load_cert_chain(cert, key)
    return context


async def test_fifty_simultaneous_first_connections_create_one_device(tls, api, tmp_path):
    gw, server_cert = tls
    ca, _ = await ready_ca(api)
    device = pki.leaf(ca, CN="burst", **SUBJECT)
    context = _client_context(server_cert, device, tmp_path)
    port = int(url_of(gw, "mqtts").rsplit(":", 1)[1])
    # The anchors follow the CA's verification: one connection first proves the CA is trusted
    # (it connects without CONNECT, so it registers nothing).
    for _ in range(20):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.close()
            break
        except (ssl.SSLError, ConnectionError):
            continue

    async def connect(i: int) -> int:
        client = RawMqtt(*await asyncio.open_connection("127.0.0.1", port, ssl=context), 4)
        try:
            connack = await client.connect(client_id=f"burst-{i}")
            return connack.reason_code
        finally:
            client.writer.close()

    codes = await asyncio.gather(*(connect(i) for i in range(50)))
    assert codes == [0] * 50
    assert await devices_in(gw, api.tenant.project_id) == [f"{api.tenant.product_id}_burst"]
    assert await audit_reasons(gw, api.tenant.project_id) == [("SUCCESS", "CREATED")]


async def test_https_me_registers_and_refuses_with_403(tls, api, tmp_path):
    gw, server_cert = tls
    ca, record = await ready_ca(api)
    good = pki.leaf(ca, CN="http-1", **SUBJECT)
    url = url_of(gw, "https")

    async def post(context) -> tuple[int, str]:
        async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=context)) as https:
            async with https.post("/api/v1/me/telemetry", data=b'{"h":1}') as resp:
                return resp.status, await resp.text()

    for _ in range(20):
        try:
            status, text = await post(_client_context(server_cert, good, tmp_path))
            break
        except aiohttp.ClientError:
            continue
    assert status == 200, text
    assert await devices_in(gw, api.tenant.project_id) == [f"{api.tenant.product_id}_http-1"]
    missing = pki.leaf(ca, CN="http-2", O="Acme")
    assert (await post(_client_context(server_cert, missing, tmp_path)))[0] == 403
    assert (await post(ssl.create_default_context(cafile=server_cert)))[0] == 401
    assert await devices_in(gw, api.tenant.project_id) == [f"{api.tenant.product_id}_http-1"]


async def test_tls_1_1_is_refused_by_openssl_s_client(tls):
    gw, server_cert = tls
    port = url_of(gw, "mqtts").rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1", "-CAfile", server_cert,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(15):
        out, _ = await proc.communicate()
    assert proc.returncode != 0, out.decode()
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-CAfile", server_cert,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(15):
        out, _ = await proc.communicate()
    assert b"TLSv1.2" in out


async def test_existing_device_is_refused_unless_the_template_allows_rotation(tls, api, tmp_path):
    gw, server_cert = tls
    ca, record = await ready_ca(api)
    first = pki.leaf(ca, CN="rot-1", **SUBJECT)
    assert (await publish_as(gw, server_cert, first, tmp_path))[0] == 0
    second = pki.leaf(ca, CN="rot-1", **SUBJECT)  # a new key and certificate, the same node id
    code, out = await publish_as(gw, server_cert, second, tmp_path, attempts=1)
    assert code != 0 and ("FAILURE", "DEVICE_EXISTS") in await audit_reasons(gw, api.tenant.project_id)
    await api.call("PUT", f"/provisioning-templates/{record['template_id']}", json={"allow_certificate_rotation": True})
    code, out = await publish_as(gw, server_cert, second, tmp_path, attempts=1)
    assert code == 0, out
    assert await devices_in(gw, api.tenant.project_id) == [f"{api.tenant.product_id}_rot-1"]
    # The old certificate no longer authenticates the device.
    code, _ = await publish_as(gw, server_cert, first, tmp_path, attempts=1)
    assert code != 0


async def test_a_disabled_device_certificate_is_refused(tls, api, tmp_path):
    gw, server_cert = tls
    ca, _ = await ready_ca(api)
    device = pki.leaf(ca, CN="dis-1", **SUBJECT)
    assert (await publish_as(gw, server_cert, device, tmp_path))[0] == 0
    await gw.services.pool.execute("UPDATE device_certificates SET enabled = false WHERE device_id = $1",
                                   f"{api.tenant.product_id}_dis-1")
    code, out = await publish_as(gw, server_cert, device, tmp_path, attempts=1)
    assert code != 0 and "not authori" in out.lower()
    assert ("FAILURE", "CERTIFICATE_DISABLED") in await audit_reasons(gw, api.tenant.project_id)
