"""ThingsBoard's MQTT gateway API with paho-mqtt, exact to the topic and the JSON
(https://thingsboard.io/docs/reference/gateway-mqtt-api/): sub-devices behind a gateway device."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest

from tests.paho_async import AsyncPaho, reason_value
from tests.support import Tenant, new_tenant, provision
from tests.telemetry_support import stored


@pytest.fixture
async def gateway_token(http: aiohttp.ClientSession, tenant: Tenant) -> str:
    _, result = await provision(http, tenant, gateway=True)
    return result["credentialsValue"]


async def connected(clients, mqtt_port: int, token: str, version: int = mqtt.MQTTv5) -> AsyncPaho:
    client = clients(version=version)
    reason, _ = await client.connect(mqtt_port, username=token)
    assert reason_value(reason) == 0
    return client


async def device_row(gateway, tenant: Tenant, name: str) -> dict[str, Any] | None:
    row = await gateway.services.pool.fetchrow(
        "SELECT d.id, d.gateway_id, p.name AS product, p.provision_strategy FROM devices d "
        "JOIN products p ON p.id = d.product_id WHERE d.project_id = $1 AND d.name = $2", tenant.project_id, name)
    return dict(row) if row else None


async def operator(management: aiohttp.ClientSession, tenant: Tenant, method: str, path: str,
                   **kwargs: Any) -> tuple[int, Any]:
    async with management.request(method, f"/v5/iot/{tenant.project_id}{path}",
                                  headers={"X-Auth-Token": tenant.token}, **kwargs) as resp:
        body = await resp.read()
        return resp.status, orjson.loads(body) if body else None


async def test_sub_devices_connect_and_their_data_is_stored(gateway, tenant, gateway_token, clients,
                                                            mqtt_port) -> None:
    client = await connected(clients, mqtt_port, gateway_token)
    typed, plain = "gw-a-" + secrets.token_hex(3), "gw-b-" + secrets.token_hex(3)
    ack = await client.publish("v1/gateway/connect", orjson.dumps({"device": typed, "type": "thermometer"}))
    assert reason_value(ack) == 0
    # The PUBACK went out once the device existed.
    row = await device_row(gateway, tenant, typed)
    assert row is not None and row["product"] == "thermometer" and row["provision_strategy"] == "DISABLED"
    assert reason_value(await client.publish("v1/gateway/connect", orjson.dumps({"device": plain}))) == 0
    assert (await device_row(gateway, tenant, plain))["product"] == "default"

    telemetry = {typed: [{"ts": 1767225600000, "values": {"temperature": 21.5}}], plain: {"humidity": 40}}
    assert reason_value(await client.publish("v1/gateway/telemetry", orjson.dumps(telemetry))) == 0
    # One PUBACK, after every row of every sub-device was committed.
    assert await stored(gateway, tenant, typed) == {"temperature": "21.5"}
    assert await stored(gateway, tenant, plain) == {"humidity": "40"}

    attributes = {typed: {"fw": "v1.2", "serial": 7}}
    assert reason_value(await client.publish("v1/gateway/attributes", orjson.dumps(attributes))) == 0
    answer = await request_attributes(client, {"id": 1, "device": typed, "client": True, "key": "fw"})
    assert answer == {"id": 1, "device": typed, "value": "v1.2"}
    answer = await request_attributes(client, {"id": 2, "device": typed, "client": True, "keys": ["fw", "serial"]})
    assert answer == {"id": 2, "device": typed, "values": {"fw": "v1.2", "serial": 7}}


async def test_a_device_first_named_in_telemetry_is_created(gateway, tenant, gateway_token, clients,
                                                            mqtt_port) -> None:
    client = await connected(clients, mqtt_port, gateway_token, mqtt.MQTTv311)
    name = "gw-new-" + secrets.token_hex(3)
    await client.publish("v1/gateway/telemetry", orjson.dumps({name: [{"ts": 1767225600000, "values": {"v": 1}}]}))
    assert await stored(gateway, tenant, name) == {"v": "1"}
    gateway_id = await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE project_id = $1 AND gateway", tenant.project_id)
    assert (await device_row(gateway, tenant, name))["gateway_id"] == gateway_id


async def request_attributes(client: AsyncPaho, request: dict[str, Any]) -> Any:
    await client.subscribe("v1/gateway/attributes/response")
    await client.publish("v1/gateway/attributes/request", orjson.dumps(request))
    message = await client.next_message()
    assert message.topic == "v1/gateway/attributes/response"
    return orjson.loads(message.payload)


async def test_shared_attributes_and_rpc_reach_a_sub_device(gateway, management, tenant, gateway_token, clients,
                                                            mqtt_port) -> None:
    client = await connected(clients, mqtt_port, gateway_token)
    name = "gw-rpc-" + secrets.token_hex(3)
    assert reason_value(await client.subscribe("v1/gateway/attributes")) == 1
    assert reason_value(await client.subscribe("v1/gateway/rpc")) == 1
    await client.publish("v1/gateway/connect", orjson.dumps({"device": name, "type": "relay"}))
    device_id = (await device_row(gateway, tenant, name))["id"]

    status, _ = await operator(management, tenant, "POST", f"/devices/{device_id}/attributes",
                               params={"scope": "SHARED_SCOPE"}, json={"interval": 30})
    assert status in (200, 201, 204)
    message = await client.next_message()
    assert (message.topic, orjson.loads(message.payload)) == (
        "v1/gateway/attributes", {"device": name, "data": {"interval": 30}})
    shared = await request_attributes(client, {"id": 3, "device": name, "client": False, "keys": ["interval"]})
    assert shared == {"id": 3, "device": name, "value": 30}

    call = asyncio.ensure_future(operator(management, tenant, "POST", f"/devices/{device_id}/commands",
                                          json={"method": "setGpio", "params": {"pin": 4}, "timeout": 10000}))
    message = await client.next_message()
    request = orjson.loads(message.payload)
    assert message.topic == "v1/gateway/rpc"
    assert request == {"device": name, "data": {"id": request["data"]["id"], "method": "setGpio",
                                                "params": {"pin": 4}}}
    reply = {"device": name, "id": request["data"]["id"], "data": {"gpio": 4, "value": 1}}
    await client.publish("v1/gateway/rpc", orjson.dumps(reply))
    assert await call == (200, {"response": {"gpio": 4, "value": 1}})

    assert reason_value(await client.publish("v1/gateway/disconnect", orjson.dumps({"device": name}))) == 0
    status, body = await operator(management, tenant, "POST", f"/devices/{device_id}/commands",
                                  json={"method": "setGpio", "params": {}, "timeout": 1000})
    assert status == 409 and "not connected" in orjson.dumps(body).decode()


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5])
async def test_a_plain_device_may_not_use_the_gateway_api(gateway, http, tenant, clients, mqtt_port,
                                                          version) -> None:
    _, result = await provision(http, tenant)
    client = await connected(clients, mqtt_port, result["credentialsValue"], version)
    name = "gw-refused-" + secrets.token_hex(3)
    ack = await client.publish("v1/gateway/telemetry", orjson.dumps({name: {"v": 1}}))
    if version == mqtt.MQTTv5:
        assert reason_value(ack) == 0x90
    granted = await client.subscribe("v1/gateway/rpc")
    assert reason_value(granted) in (0x80, 0x8F)
    assert await device_row(gateway, tenant, name) is None


async def test_a_gateway_acts_only_in_its_own_project(gateway, tenant, gateway_token, clients, mqtt_port) -> None:
    other = await new_tenant(gateway.services)
    name = "shared-name-" + secrets.token_hex(3)
    await gateway.services.pool.execute(
        "INSERT INTO devices (id, project_id, product_id, name, created_at) VALUES ($1, $2, $3, $4, 0)",
        "other-" + secrets.token_hex(6), other.project_id, other.product_id, name)
    client = await connected(clients, mqtt_port, gateway_token)
    await client.publish("v1/gateway/telemetry", orjson.dumps({name: {"v": 2}}))
    assert await stored(gateway, tenant, name) == {"v": "2"}
    assert await stored(gateway, other, name) == {}
    assert (await device_row(gateway, other, name))["gateway_id"] is None


async def test_malformed_gateway_messages_are_refused(gateway, tenant, gateway_token, clients, mqtt_port) -> None:
    client = await connected(clients, mqtt_port, gateway_token)
    for topic, payload in (("v1/gateway/telemetry", b"{"), ("v1/gateway/telemetry", b"[1]"),
                           ("v1/gateway/connect", b'{"type":"x"}'), ("v1/gateway/attributes", b'{"A":[1]}'),
                           ("v1/gateway/telemetry", b'{"":{"v":1}}')):
        assert reason_value(await client.publish(topic, payload)) == 0x99, (topic, payload)
    # Nothing of a refused message is stored, not even the devices it named.
    assert await device_row(gateway, tenant, "A") is None


async def test_sub_devices_show_their_gateway_and_status(gateway, management, tenant, gateway_token, clients,
                                                         mqtt_port) -> None:
    client = await connected(clients, mqtt_port, gateway_token)
    name = "gw-status-" + secrets.token_hex(3)
    await client.publish("v1/gateway/connect", orjson.dumps({"device": name}))
    device_id = (await device_row(gateway, tenant, name))["id"]
    gateway_id = await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE project_id = $1 AND gateway", tenant.project_id)
    await gateway.presence.flush()
    _, shown = await operator(management, tenant, "GET", f"/devices/{device_id}")
    assert (shown["node_type"], shown["gateway_id"], shown["status"]) == ("ENDPOINT", gateway_id, "ONLINE")
    _, own = await operator(management, tenant, "GET", f"/devices/{gateway_id}")
    assert (own["node_type"], own["gateway_id"], own["status"]) == ("GATEWAY", None, "ONLINE")
    _, listed = await operator(management, tenant, "GET", "/devices", params={"gateway_id": gateway_id})
    assert [d["device_name"] for d in listed["devices"]] == [name]

    await client.publish("v1/gateway/disconnect", orjson.dumps({"device": name}))
    await gateway.presence.flush()
    _, shown = await operator(management, tenant, "GET", f"/devices/{device_id}")
    assert shown["status"] == "OFFLINE" and shown["last_offline_time"] is not None
