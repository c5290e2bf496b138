"""IoTDA devices on MQTTS, as Huawei's SDK connects there (TLS 1.2, the host name unchecked): a
secret device, and certificate devices that send their device id as user name with the
certificate (a template registers them on their first connection, or AddDevice binds a fingerprint)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl

import orjson
import paho.mqtt.client as mqtt
import pytest

from tests import pki
from tests.autoregistration_support import SUBJECT
from tests.certificates_support import ready_ca
from tests.iotda_support import (
    ThreadedPaho, add_secret_device, connect_tls, hour, mqtts_port, report, sdk_context, topic,
)
from tests.management_client import Management
from tests.paho_async import reason_value


@pytest.fixture
def api(tls_api: Management) -> Management:
    """This module's tenant lives on the TLS gateway."""
    return tls_api


@pytest.fixture
async def devices():
    """Connects SDK-like devices over MQTTS; each is closed at the end of the test."""
    made: list[ThreadedPaho] = []

    async def make(*args, **kwargs) -> tuple[ThreadedPaho, int]:
        client, reason = await connect_tls(*args, **kwargs)
        made.append(client)
        return client, reason

    yield make
    for client in made:
        await client.close()


async def trusted(port: int, context: ssl.SSLContext) -> None:
    """The anchors follow the CA's verification (a NOTIFY): a bare handshake proves the CA is trusted."""
    for _ in range(50):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            writer.close()
            return
        except (ssl.SSLError, ConnectionError):
            continue


async def test_a_secret_device_on_mqtts(tls, api, devices) -> None:
    gw, server_cert = tls
    device_id = (await add_secret_device(api, "tls-secret"))["device_id"]
    device, reason = await devices(mqtts_port(gw), device_id, "AccSecret_0123", sdk_context(server_cert))
    assert reason == 0
    assert reason_value(await device.publish(topic(device_id, "properties/report"), report("S", {"v": 1}))) == 0
    _, reason = await devices(mqtts_port(gw), device_id, "Wrong_secret", sdk_context(server_cert))
    assert reason != 0


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5])
async def test_a_template_registered_device_connects_the_sdks_way(tls, api, devices, tmp_path, version) -> None:
    gw, server_cert = tls
    ca, _ = await ready_ca(api)
    node = f"meter-{version}"
    leaf = pki.leaf(ca, CN=node, **SUBJECT)
    context = sdk_context(server_cert, leaf, tmp_path)
    await trusted(mqtts_port(gw), context)
    device_id = f"{api.tenant.product_id}_{node}"
    # User name = the device id, no password, the certificate: registered on this connection.
    device, reason = await devices(mqtts_port(gw), device_id, None, context, version=version)
    assert reason == 0
    assert reason_value(await device.publish(topic(device_id, "properties/report"), report("S", {"v": 2}))) == 0
    shown = await api.call("GET", f"/devices/{device_id}")
    fingerprint = hashlib.sha256(leaf.certificate.public_bytes(pki.serialization.Encoding.DER)).hexdigest()
    assert shown.body["auth_info"]["auth_type"] == "CERTIFICATES"
    assert shown.body["auth_info"]["fingerprint"] == fingerprint
    assert shown.body["provisioned"] is True
    # Connecting again finds it by the certificate; a stale hour with the flag 1 is refused.
    _, reason = await devices(mqtts_port(gw), device_id, None, context, version=version)
    assert reason == 0
    _, reason = await devices(mqtts_port(gw), device_id, None, context, version=version,
                              stamp=hour(-3))
    assert reason != 0


async def test_a_user_name_never_selects_another_device_than_the_certificates(tls, api, devices, tmp_path) -> None:
    gw, server_cert = tls
    ca, _ = await ready_ca(api)
    mine = pki.leaf(ca, CN="meter-mine", **SUBJECT)
    context = sdk_context(server_cert, mine, tmp_path)
    await trusted(mqtts_port(gw), context)
    other = (await add_secret_device(api, "tls-victim"))["device_id"]
    _, reason = await devices(mqtts_port(gw), other, None, context)
    assert reason != 0
    # Nor with the victim's id and a password beside the certificate: a secret device needs its secret.
    _, reason = await devices(mqtts_port(gw), other, "AccSecret_WRONG", context)
    assert reason != 0


async def test_add_device_binds_a_certificate_by_fingerprint(tls, api, devices, tmp_path) -> None:
    gw, server_cert = tls
    ca, _ = await ready_ca(api)
    leaf = pki.leaf(ca, CN="bound-1", **SUBJECT)
    fingerprint = hashlib.sha256(leaf.certificate.public_bytes(pki.serialization.Encoding.DER)).hexdigest()
    reply = await api.call("POST", "/devices", json={
        "node_id": "bound-1", "product_id": api.tenant.product_id, "device_name": "bound-1",
        "auth_info": {"auth_type": "CERTIFICATES", "fingerprint": fingerprint.upper(), "secure_access": True}})
    assert reply.status == 201, reply
    device_id = reply.body["device_id"]
    assert reply.body["auth_info"]["auth_type"] == "CERTIFICATES" and reply.body["auth_info"]["fingerprint"] == fingerprint
    context = sdk_context(server_cert, leaf, tmp_path)
    await trusted(mqtts_port(gw), context)
    device, reason = await devices(mqtts_port(gw), device_id, None, context)
    assert reason == 0
    await device.publish(topic(device_id, "events/up"), orjson.dumps({"services": []}))
