"""/healthz, /readyz and /metrics: the figures on /metrics match what a client sent."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import orjson

from fleetgate.core.health import Readiness
from fleetgate.protocols.mqtt.packets import MQTT_5, PubAck, Publish
from tests.metrics_support import scrape, value
from tests.mqtt_raw import RawMqtt
from tests.support import gateway_settings, running_gateway


async def test_healthz_and_readyz_when_all_is_well(management) -> None:
    async with management.get("/healthz") as resp:
        assert resp.status == 200
    async with management.get("/readyz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body == {"status": "ready", "checks": {"database": "ok", "ingest_queue": "ok", "listeners": "ok"}}


async def test_readyz_names_the_listeners_when_they_stopped_accepting(database_url, tmp_path) -> None:
    async with running_gateway(database_url, gateway_settings(str(tmp_path))) as gw:
        url = next(listener.url for listener in gw.listeners if listener.name == "management")
        await gw._mqtt.stop_accepting()
        async with aiohttp.ClientSession(url) as client, client.get("/readyz") as resp:
            assert resp.status == 503
            body = await resp.json()
    assert body["status"] == "not ready"
    assert body["checks"] == {"database": "ok", "ingest_queue": "ok", "listeners": "not accepting connections"}


async def test_readiness_reports_each_failed_check() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    async def refused() -> None:
        raise ConnectionRefusedError

    report = await Readiness(hangs, lambda: True, lambda: True, database_timeout=0.05).report()
    assert not report.ready
    assert report.checks == {"database": "no answer within 0.05 s", "ingest_queue": "saturated", "listeners": "ok"}
    report = await Readiness(refused, lambda: False, lambda: False).report()
    assert report.checks["database"] == "unreachable: ConnectionRefusedError"
    assert report.checks["listeners"] == "not accepting connections"


async def test_metrics_match_what_the_client_sent(gateway, tenant, http, management, mqtt_port) -> None:
    before = await scrape(management)

    tokens = []
    for _ in range(2):
        body = {"deviceName": "m-" + secrets.token_hex(4), "provisionDeviceKey": tenant.provision_key,
                "provisionDeviceSecret": tenant.provision_secret}
        async with http.post("/api/v1/provision", json=body) as resp:
            tokens.append(orjson.loads(await resp.read())["credentialsValue"])
    async with http.post("/api/v1/provision", json={"provisionDeviceKey": "nope", "provisionDeviceSecret": "x"}):
        pass
    for i in range(3):
        async with http.post(f"/api/v1/{tokens[0]}/telemetry", json={"a": i, "b": "x"}) as resp:
            assert resp.status == 200
    async with http.post("/api/v1/wrong-token/telemetry", json={"a": 1}) as resp:
        assert resp.status == 401

    refused = await RawMqtt.open(mqtt_port, MQTT_5)
    await refused.connect(username="not-a-token")
    await refused.close()
    client = await RawMqtt.open(mqtt_port, MQTT_5)
    await client.connect(username=tokens[1])
    while_connected = await scrape(management)
    for packet_id in range(1, 6):
        payload = orjson.dumps({"x": packet_id, "y": 1.5, "z": True})
        await client.send(Publish("v1/devices/me/telemetry", payload, qos=1, packet_id=packet_id))
        ack = await client.packet()
        assert isinstance(ack, PubAck) and ack.packet_id == packet_id
    await client.close()
    after = await scrape(management)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gateway_provisioning_total", protocol="http", status="SUCCESS", reason="created") == 2
    assert delta("gateway_provisioning_total", protocol="http", status="NOT_FOUND", reason="unknown_key_or_secret") == 1
    assert delta("gateway_messages_total", protocol="http", kind="telemetry") == 3
    assert delta("gateway_datapoints_total", protocol="http") == 6
    assert delta("gateway_messages_total", protocol="mqtt", kind="telemetry") == 5
    assert delta("gateway_datapoints_total", protocol="mqtt") == 15
    assert delta("gateway_rows_stored_total") == 21
    assert delta("gateway_batch_rows_sum") == 21
    assert delta("gateway_batch_write_seconds_count") == delta("gateway_batch_rows_count") >= 1
    # Every batch written was taken by a writer once: its wait is the first stage of the acknowledgement.
    assert delta("gateway_batch_wait_seconds_count") == delta("gateway_batch_write_seconds_count")
    assert delta("gateway_auth_failures_total", protocol="http") == 1
    assert delta("gateway_auth_failures_total", protocol="mqtt") == 1
    assert delta("gateway_database_errors_total") == 0
    assert value(while_connected, "gateway_connections", protocol="mqtt") - value(
        before, "gateway_connections", protocol="mqtt") == 1
    assert value(after, "gateway_ingest_queue_rows") == 0
