"""AddDevice's secure_access and node_id, as IoTDA has them: a secret device with secure_access
(IoTDA's default) connects over TLS (MQTTS) only, plain MQTT is refused and counted; a node id is
stored, shown and unique within its product. The device is paho-mqtt, as Huawei's SDK connects."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.autoregistration_support import url_of
from tests.iotda_support import ThreadedPaho, client_id, connect, connect_tls, hour, mqtts_port, password, sdk_context

SECRET = "AccSecret_0123"


def refusals(reason: str) -> float:
    return REGISTRY.get_sample_value("gateway_bad_requests_total", {"protocol": "mqtt", "reason": reason}) or 0.0


def auth_failures() -> float:
    return REGISTRY.get_sample_value("gateway_auth_failures_total", {"protocol": "mqtt"}) or 0.0


async def add(api, node_id: str, **auth_info: object) -> dict:
    reply = await api.call("POST", "/devices", json={
        "node_id": node_id, "product_id": api.tenant.product_id,
        "auth_info": {"auth_type": "SECRET", "secret": SECRET, **auth_info}})
    assert reply.status == 201, reply
    return reply.body


async def test_secure_access_by_default_refuses_plain_mqtt_and_takes_mqtts(tls, tls_api, clients) -> None:
    gw, server_cert = tls
    added = await add(tls_api, "secure-default")
    device_id = added["device_id"]
    assert added["auth_info"]["secure_access"] is True
    shown = await tls_api.call("GET", f"/devices/{device_id}")
    assert shown.body["auth_info"]["secure_access"] is True and "secret" not in shown.body["auth_info"]

    plain = int(url_of(gw, "mqtt").rsplit(":", 1)[1])
    insecure, failures = refusals("insecure_access"), auth_failures()
    _, reason = await connect(clients, plain, device_id, SECRET)
    assert reason != 0
    assert refusals("insecure_access") == insecure + 1 and auth_failures() == failures + 1

    device = ThreadedPaho(client_id(device_id, hour()))
    try:
        assert await device.connect(mqtts_port(gw), device_id, password(SECRET, hour()), sdk_context(server_cert)) == 0
    finally:
        await device.close()
    assert refusals("insecure_access") == insecure + 1


async def test_secure_access_false_allows_plain_mqtt_and_a_reset_keeps_it(tls, tls_api, clients) -> None:
    gw, server_cert = tls
    device_id = (await add(tls_api, "secure-off", secure_access=False))["device_id"]
    assert (await tls_api.call("GET", f"/devices/{device_id}")).body["auth_info"]["secure_access"] is False
    plain = int(url_of(gw, "mqtt").rsplit(":", 1)[1])
    _, reason = await connect(clients, plain, device_id, SECRET)
    assert reason == 0
    # A secure device stays secure across ResetDeviceSecret.
    secure_id = (await add(tls_api, "secure-reset"))["device_id"]
    reset = await tls_api.call("POST", f"/devices/{secure_id}/action", params={"action_id": "resetSecret"},
                               json={"secret": "NewSecret_4567"})
    assert reset.status == 200
    assert (await tls_api.call("GET", f"/devices/{secure_id}")).body["auth_info"]["secure_access"] is True
    _, reason = await connect(clients, plain, secure_id, "NewSecret_4567")
    assert reason != 0
    device, reason = await connect_tls(mqtts_port(gw), secure_id, "NewSecret_4567", sdk_context(server_cert))
    try:
        assert reason == 0
    finally:
        await device.close()


async def test_secure_access_must_be_a_boolean(tls_api) -> None:
    reply = await tls_api.call("POST", "/devices", json={
        "node_id": "secure-bad", "product_id": tls_api.tenant.product_id,
        "auth_info": {"auth_type": "SECRET", "secure_access": "yes"}})
    assert reply.status == 400 and reply.body["error_code"] == "IOTDA.000006"


async def test_the_node_id_is_stored_shown_and_unique_within_the_product(api) -> None:
    added = await api.call("POST", "/devices", json={
        "node_id": "IMEI-861234", "device_id": "meter-a", "product_id": api.tenant.product_id,
        "auth_info": {"auth_type": "SECRET", "secret": SECRET, "secure_access": False}})
    assert added.status == 201 and added.body["node_id"] == "IMEI-861234"
    shown = await api.call("GET", "/devices/meter-a")
    assert shown.body["node_id"] == "IMEI-861234"
    listed = await api.call("GET", "/devices", params={"product_id": api.tenant.product_id})
    assert {d["device_id"]: d["node_id"] for d in listed.body["devices"]}["meter-a"] == "IMEI-861234"
    # The same node id again in the product, under another device id: refused, nothing created.
    again = await api.call("POST", "/devices", json={
        "node_id": "IMEI-861234", "device_id": "meter-b", "device_name": "meter-b",
        "product_id": api.tenant.product_id, "auth_info": {"auth_type": "SECRET"}})
    assert again.status == 409 and again.body["error_code"] == "IOTDA.000007"
    assert (await api.call("GET", "/devices/meter-b")).status == 404
    # In another product it is free (the name, unique in the project, is another).
    other_product = (await api.call("POST", "/products", json={"name": "other"})).body["product_id"]
    elsewhere = await api.call("POST", "/devices", json={
        "node_id": "IMEI-861234", "device_name": "meter-elsewhere", "product_id": other_product,
        "auth_info": {"auth_type": "SECRET"}})
    assert elsewhere.status == 201 and elsewhere.body["node_id"] == "IMEI-861234"
    assert elsewhere.body["device_id"] == f"{other_product}_IMEI-861234"
    # A device made without IoTDA's fields has none.
    plain = await api.create_device("no-node")
    assert plain["node_id"] is None


async def test_a_certificate_device_keeps_its_node_id(api) -> None:
    reply = await api.call("POST", "/devices", json={
        "node_id": "cert-node-1", "product_id": api.tenant.product_id,
        "auth_info": {"auth_type": "CERTIFICATES", "fingerprint": "ab" * 32}})
    assert reply.status == 201 and reply.body["node_id"] == "cert-node-1"
    again = await api.call("POST", "/devices", json={
        "node_id": "cert-node-1", "device_id": "cert-node-dup", "device_name": "cert-node-dup",
        "product_id": api.tenant.product_id, "auth_info": {"auth_type": "CERTIFICATES", "fingerprint": "cd" * 32}})
    assert again.status == 409
