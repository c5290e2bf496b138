"""Downlink through PostgreSQL NOTIFY: two gateways on one database (as two workers or two
replicas would be), the device connected to one, the operator calling through the other."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import orjson
import pytest

from fleetgate.protocols.mqtt.packets import Publish, Subscribe, Subscription
from tests.mqtt_raw import RawMqtt
from tests.support import gateway_settings, running_gateway


@pytest.fixture(scope="module")
async def other(database_url, tmp_path_factory):
    """A second gateway: its own listeners and processes' state, the same database."""
    async with running_gateway(database_url, gateway_settings(str(tmp_path_factory.mktemp("other")))) as gw:
        yield gw


@pytest.fixture
async def other_management(other):
    url = next(listener.url for listener in other.listeners if listener.name == "management")
    async with aiohttp.ClientSession(url) as session:
        yield session


@pytest.fixture
async def connected(gateway, base_url, tenant, mqtt_port):
    """A device connected over MQTT to the session's gateway, subscribed to RPC and attributes."""
    name = "roaming-" + secrets.token_hex(4)
    async with aiohttp.ClientSession(base_url) as http, http.post("/api/v1/provision", json={
            "deviceName": name, "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}) as resp:
        token = orjson.loads(await resp.read())["credentialsValue"]
    device_id = await gateway.services.pool.fetchval("SELECT id FROM devices WHERE name = $1", name)
    client = await RawMqtt.open(mqtt_port)
    assert (await client.connect(token)).reason_code == 0
    await client.send(Subscribe(1, (Subscription("v1/devices/me/rpc/request/+", 0),
                                    Subscription("v1/devices/me/attributes", 0))))
    await client.packet()  # SUBACK
    yield device_id, client
    await client.close()


async def call(management, tenant, device_id: str, body: dict) -> tuple[int, dict]:
    async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands", json=body,
                               headers={"X-Auth-Token": tenant.token}) as resp:
        return resp.status, orjson.loads(await resp.read())


@pytest.mark.parametrize("size", [10, 5_000], ids=["small", "over-one-notification"])
async def test_rpc_through_the_gateway_that_does_not_hold_the_device(other_management, tenant, connected,
                                                                     size) -> None:
    device_id, client = connected
    params = {"blob": "é" * size}
    operator = asyncio.ensure_future(call(other_management, tenant, device_id,
                                          {"method": "echo", "params": params, "timeout": 5000}))
    request = await client.packet()
    assert orjson.loads(request.payload) == {"method": "echo", "params": params}
    request_id = request.topic.rsplit("/", 1)[1]
    await client.send(Publish(f"v1/devices/me/rpc/response/{request_id}", orjson.dumps({"len": size})))
    assert await operator == (200, {"response": {"len": size}})


async def test_shared_attributes_set_through_the_other_gateway_are_pushed(other_management, tenant,
                                                                         connected) -> None:
    device_id, client = connected
    async with other_management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/attributes",
                                     params={"scope": "SHARED_SCOPE"}, json={"interval": 15},
                                     headers={"X-Auth-Token": tenant.token}) as resp:
        assert resp.status == 200
    update = await client.packet()
    assert (update.topic, orjson.loads(update.payload)) == ("v1/devices/me/attributes", {"interval": 15})


async def test_a_device_connected_to_no_gateway_is_409_through_either(other_management, management, tenant,
                                                                      connected) -> None:
    device_id, client = connected
    await client.close()
    for api in (management, other_management):
        status, body = await call(api, tenant, device_id, {"method": "reboot", "oneway": True})
        assert (status, body["error_code"]) == (409, "IOTDA.014016")


async def test_a_persistent_call_through_the_other_gateway_reaches_the_device_and_succeeds(
        gateway, other_management, tenant, connected) -> None:
    device_id, client = connected
    status, queued = await call(other_management, tenant, device_id,
                                {"method": "echo", "params": {"n": 1}, "persistent": True})
    assert (status, queued["status"]) == (202, "QUEUED")
    request = await client.packet()  # the gateway holding the device took the call
    assert orjson.loads(request.payload) == {"method": "echo", "params": {"n": 1}}
    request_id = request.topic.rsplit("/", 1)[1]
    await client.send(Publish(f"v1/devices/me/rpc/response/{request_id}", b'{"n":2}'))
    await gateway.persistent_rpc.settled()
    async with other_management.get(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands/"
                                    f"{queued['command_id']}", headers={"X-Auth-Token": tenant.token}) as resp:
        shown = orjson.loads(await resp.read())
    assert (shown["status"], shown["response"]) == ("SUCCESSFUL", {"n": 2})
