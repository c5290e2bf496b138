"""Structured logs: identifiers in the records, secrets never."""

from __future__ import annotations

import io
import logging
import secrets

import orjson
import paho.mqtt.client as mqtt

from fleetgate.core import logs
from tests.paho_async import AsyncPaho


def test_json_records_carry_bound_and_given_identifiers() -> None:
    out = io.StringIO()
    logger = logging.getLogger("tests.logs.unit")
    logger.addHandler(logs.handler("json", out))
    logger.setLevel(logging.INFO)
    try:
        with logs.bound(request_id="r-1"):
            logger.info("connecting to %s", "postgresql://gw:hunter2@db/iot", extra={"device_id": "d-1"})
        logger.info("outside")
    finally:
        logger.handlers.clear()
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "connecting to postgresql://gw:***@db/iot"
    assert (first["request_id"], first["device_id"], first["level"]) == ("r-1", "d-1", "info")
    assert "request_id" not in second


def test_text_records_show_identifiers_after_the_message() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "stored", (), None)
    record.device_id = "d-2"
    assert logs.TextFormatter().format(record).endswith("x: stored [device_id=d-2]")


async def test_no_secret_reaches_the_logs(gateway, tenant, http, management, mqtt_port) -> None:
    out = io.StringIO()
    capture = logs.handler("json", out)
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    token = "tok-" + secrets.token_hex(8)
    password = "pw-" + secrets.token_hex(8)
    user, client_id = "user-" + secrets.token_hex(4), "cid-" + secrets.token_hex(4)
    try:
        # HTTP provisioning with a device-chosen token, then telemetry with it and with a wrong one.
        async with http.post("/api/v1/provision", json={
                "deviceName": "log-" + secrets.token_hex(3), "provisionDeviceKey": tenant.provision_key,
                "provisionDeviceSecret": tenant.provision_secret, "credentialsType": "ACCESS_TOKEN",
                "token": token}) as resp:
            assert orjson.loads(await resp.read())["status"] == "SUCCESS"
        async with http.post(f"/api/v1/{token}/telemetry", json={"t": 1}) as resp:
            assert resp.status == 200
        async with http.post(f"/api/v1/{token}x/telemetry", json={"t": 1}) as resp:
            assert resp.status == 401
        # MQTT provisioning of basic credentials, a connection with them and one with a wrong password.
        provisioner = AsyncPaho(version=mqtt.MQTTv5)
        await provisioner.connect(mqtt_port, username="provision")
        await provisioner.subscribe("/provision/response")
        await provisioner.publish("/provision/request", orjson.dumps({
            "deviceName": "log-" + secrets.token_hex(3), "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret, "credentialsType": "MQTT_BASIC",
            "clientId": client_id, "username": user, "password": password}))
        assert orjson.loads((await provisioner.next_message()).payload)["status"] == "SUCCESS"
        await provisioner.close()
        device = AsyncPaho(client_id, version=mqtt.MQTTv5)
        await device.connect(mqtt_port, username=user, password=password)
        await device.publish("v1/devices/me/telemetry", b'{"t": 2}')
        await device.close()
        intruder = AsyncPaho(client_id, version=mqtt.MQTTv5)
        await intruder.connect(mqtt_port, username=user, password=password + "x")
        await intruder.close()
        # A management call: its token travels in a header.
        async with management.get(f"/v5/iot/{tenant.project_id}/devices",
                                  headers={"X-Auth-Token": tenant.token, "X-Request-Id": "req-42"}) as resp:
            assert resp.status == 200
            assert resp.headers["X-Request-Id"] == "req-42"
    finally:
        root.removeHandler(capture)
        root.setLevel(level)

    text = out.getvalue()
    records = [orjson.loads(line) for line in text.splitlines()]
    for secret in (token, password, tenant.provision_secret, tenant.token):
        assert secret not in text
    assert any(r.get("device_id") and "provisioning SUCCESS" in r["message"] for r in records)
    assert any(r.get("device_id") and r["message"] == "MQTT connection accepted" for r in records)
    assert any(r.get("client_id") == client_id and "refused" in r["message"] for r in records)
    assert any(r.get("request_id") == "req-42" and "/devices 200" in r["message"] for r in records)
