"""Who counts as listening for persistent RPC, end to end: a device that unsubscribes from its RPC
topic (MQTT) or deregisters its RPC observation (CoAP) no longer takes its persistent calls, and a
gateway's sub-devices take theirs through the gateway's ``v1/gateway/rpc`` subscription, as
ThingsBoard delivers them (paho-mqtt, a raw CoAP endpoint).

Deliveries run in the gateway's own tasks: the tests await its ``settled`` rather than polling.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from aiocoap import Code

from fleetgate.app import Gateway
from tests.coap_support import coap_client, device_id_of, port_of, provision_device
from tests.coap_wire import RawCoap, request
from tests.management_client import Management
from tests.paho_async import AsyncPaho, reason_value
from tests.persistent_rpc_support import RPC_REQUESTS, offline_device, persistent_call, shown
from tests.support import Tenant, provision


async def connected(clients, mqtt_port: int, token: str) -> AsyncPaho:
    client = clients(version=mqtt.MQTTv5)
    reason, _ = await client.connect(mqtt_port, username=token)
    assert reason_value(reason) == 0
    return client


async def unsubscribe(client: AsyncPaho, topic: str) -> Any:
    _, mid = client.client.unsubscribe(topic)
    return await client._ack(mid)


async def status_of(gateway: Gateway, api: Management, device_id: str, command_id: str) -> str:
    await gateway.persistent_rpc.settled()
    return (await shown(api, device_id, command_id))["status"]


async def test_an_mqtt_device_that_unsubscribed_from_rpc_gets_no_persistent_call(
    gateway: Gateway, http, api: Management, tenant: Tenant, clients, mqtt_port: int
) -> None:
    device_id, token = await offline_device(http, api, tenant)
    client = await connected(clients, mqtt_port, token)
    assert reason_value(await client.subscribe(RPC_REQUESTS)) == 1
    assert reason_value(await unsubscribe(client, RPC_REQUESTS)) == 0
    queued = await persistent_call(api, device_id, timeout=5000)
    assert await status_of(gateway, api, device_id, queued["command_id"]) == "QUEUED"
    assert client.messages.empty()

    # Subscribed again: the call waiting goes out, once.
    await client.subscribe(RPC_REQUESTS)
    message = await client.next_message()
    assert orjson.loads(message.payload) == {"method": "setGpio", "params": {"pin": 4}}
    await client.publish(message.topic.replace("/request/", "/response/"), b'"ok"')
    assert await status_of(gateway, api, device_id, queued["command_id"]) == "SUCCESSFUL"
    await client.close()


async def test_a_deregistered_coap_rpc_observation_gets_no_persistent_call(
    gateway: Gateway, api: Management, tenant: Tenant, coap_url: str
) -> None:
    async with coap_client() as client:
        name, token = await provision_device(client, coap_url, tenant)
    device_id = await device_id_of(gateway, tenant, name)
    raw = await RawCoap.open(port_of(coap_url))
    try:
        # Observing its attributes keeps the device connected once the RPC observation ends.
        raw.send(request(Code.GET, f"/api/v1/{token}/attributes", observe=0))
        assert (await raw.receive()).code == Code.CONTENT
        register = request(Code.GET, f"/api/v1/{token}/rpc", observe=0)
        raw.send(register)
        assert (await raw.receive()).opt.observe == 0
        deregister = request(Code.GET, f"/api/v1/{token}/rpc", observe=1)
        deregister.token = register.token
        raw.send(deregister)
        assert (await raw.receive()).opt.observe is None

        queued = await persistent_call(api, device_id)
        assert await status_of(gateway, api, device_id, queued["command_id"]) == "QUEUED"
        assert raw.nothing_received()
    finally:
        raw.close()


async def gateway_device(http, tenant: Tenant) -> str:
    _, result = await provision(http, tenant, gateway=True)
    return result["credentialsValue"]


async def sub_device(gateway: Gateway, tenant: Tenant, client: AsyncPaho) -> tuple[str, str]:
    """A sub-device connected through ``client``'s gateway: its name and id."""
    name = "sub-" + secrets.token_hex(3)
    assert reason_value(await client.publish("v1/gateway/connect", orjson.dumps({"device": name}))) == 0
    return name, await device_id_of(gateway, tenant, name)


async def answer_subdevice_call(client: AsyncPaho, name: str, params: Any) -> None:
    """Take the next request on v1/gateway/rpc, check it, and answer it as ThingsBoard's gateway does."""
    message = await client.next_message()
    request = orjson.loads(message.payload)
    assert message.topic == "v1/gateway/rpc"
    assert request == {"device": name, "data": {"id": request["data"]["id"], "method": "setGpio", "params": params}}
    reply = {"device": name, "id": request["data"]["id"], "data": {"done": True}}
    await client.publish("v1/gateway/rpc", orjson.dumps(reply))


async def test_a_sub_devices_persistent_call_goes_out_through_its_gateways_subscription(
    gateway: Gateway, http, api: Management, tenant: Tenant, clients, mqtt_port: int
) -> None:
    token = await gateway_device(http, tenant)
    client = await connected(clients, mqtt_port, token)
    name, device_id = await sub_device(gateway, tenant, client)
    # Connected through a gateway not subscribed to v1/gateway/rpc: the call waits.
    queued = await persistent_call(api, device_id, timeout=5000)
    assert await status_of(gateway, api, device_id, queued["command_id"]) == "QUEUED"
    assert client.messages.empty()

    assert reason_value(await client.subscribe("v1/gateway/rpc")) == 1
    await answer_subdevice_call(client, name, {"pin": 4})
    assert await status_of(gateway, api, device_id, queued["command_id"]) == "SUCCESSFUL"
    assert (await shown(api, device_id, queued["command_id"]))["response"] == {"done": True}

    # Unsubscribed: the sub-device listens no more.
    assert reason_value(await unsubscribe(client, "v1/gateway/rpc")) == 0
    again = await persistent_call(api, device_id, timeout=5000)
    assert await status_of(gateway, api, device_id, again["command_id"]) == "QUEUED"
    assert client.messages.empty()
    await client.close()


async def test_a_sub_devices_call_made_while_its_gateway_was_offline_goes_out_once_it_connects_it(
    gateway: Gateway, http, api: Management, tenant: Tenant, clients, mqtt_port: int
) -> None:
    token = await gateway_device(http, tenant)
    first = await connected(clients, mqtt_port, token)
    name, device_id = await sub_device(gateway, tenant, first)
    await first.close()
    queued = await persistent_call(api, device_id, params={"pin": 7}, timeout=5000)

    client = await connected(clients, mqtt_port, token)
    assert reason_value(await client.subscribe("v1/gateway/rpc")) == 1
    # Subscribed, but the sub-device is not connected through this session yet.
    assert await status_of(gateway, api, device_id, queued["command_id"]) == "QUEUED"
    assert client.messages.empty()
    await client.publish("v1/gateway/connect", orjson.dumps({"device": name}))
    await answer_subdevice_call(client, name, {"pin": 7})
    assert await status_of(gateway, api, device_id, queued["command_id"]) == "SUCCESSFUL"
    assert (await shown(api, device_id, queued["command_id"]))["attempts"] == 1

    # Disconnected by its gateway: the sub-device listens no more.
    await client.publish("v1/gateway/disconnect", orjson.dumps({"device": name}))
    again = await persistent_call(api, device_id, timeout=5000)
    assert await status_of(gateway, api, device_id, again["command_id"]) == "QUEUED"
    assert client.messages.empty()
    await client.close()
