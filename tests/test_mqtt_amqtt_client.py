"""The MQTT transport with amqtt's MQTTClient (MQTT 3.1.1), on the test's own event loop.

amqtt is an independent asyncio client implementation: its own codec, its own
QoS 1/2 flows. Every client is disconnected in a finally, and auto-reconnect is
off, so a refused CONNECT raises at once instead of retrying with sleeps.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from amqtt.client import MQTTClient
from amqtt.errors import ConnectError
from amqtt.mqtt.constants import QOS_0, QOS_1, QOS_2
from amqtt.session import ApplicationMessage

from tests.support import Tenant, provision
from tests.telemetry_support import stored

CONFIG = {"auto_reconnect": False, "keep_alive": 60, "connection_timeout": 10}


def new_client() -> MQTTClient:
    return MQTTClient(client_id="amqtt-" + secrets.token_hex(4), config=dict(CONFIG))


async def close(client: MQTTClient) -> None:
    """Disconnect (when connected) and stop amqtt's tasks, bounded."""
    async with asyncio.timeout(10):
        if client.session is not None and client.session.transitions.is_connected():
            await client.disconnect()
        else:
            await client.cancel_tasks()
            if client._handler is not None:
                # A refused CONNECT leaves amqtt's writer open: close it.
                await client._handler.stop()
                if client._handler.writer is not None:
                    await client._handler.writer.close()


@asynccontextmanager
async def connected(port: int, token: str) -> AsyncIterator[MQTTClient]:
    client = new_client()
    try:
        async with asyncio.timeout(10):
            assert await client.connect(f"mqtt://{token}@127.0.0.1:{port}/") == 0
        yield client
    finally:
        await close(client)


async def next_message(client: MQTTClient, timeout: float = 10) -> ApplicationMessage:
    message = await client.deliver_message(timeout_duration=timeout)
    assert message is not None
    return message


@pytest.fixture
async def device(http, tenant: Tenant) -> tuple[str, str]:
    name, result = await provision(http, tenant)
    return name, result["credentialsValue"]


async def device_id(gateway, tenant: Tenant, name: str) -> str:
    return await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE name = $1 AND project_id = $2", name, tenant.project_id)


async def rows_of(gateway, tenant: Tenant, name: str, key: str) -> int:
    return await gateway.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key JOIN devices d ON d.id = t.device_id "
        "WHERE d.name = $1 AND d.project_id = $2 AND k.key = $3", name, tenant.project_id, key)


async def test_telemetry_qos0_and_qos1_are_stored(gateway, tenant, device, mqtt_port) -> None:
    name, token = device
    async with connected(mqtt_port, token) as client:
        await client.publish("v1/devices/me/telemetry", b'{"q1":1,"label":"one"}', qos=QOS_1)
        # QoS 1 returns after the PUBACK, which the gateway sends once the rows are committed.
        assert await stored(gateway, tenant, name) == {"q1": "1", "label": "one"}
        # QoS 0 has no acknowledgement: a QoS 1 message after it, acknowledged in order, proves it went through.
        await client.publish("v1/devices/me/telemetry", b'{"q0":0.5}', qos=QOS_0)
        await client.publish("v1/devices/me/telemetry", b'{"after_q0":true}', qos=QOS_1)
        assert await stored(gateway, tenant, name) == {"q1": "1", "label": "one", "after_q0": "true", "q0": "0.5"}


async def test_telemetry_qos2_is_stored_exactly_once(gateway, tenant, device, mqtt_port) -> None:
    name, token = device
    async with connected(mqtt_port, token) as client:
        message = await client.publish("v1/devices/me/telemetry", b'[{"ts":1767225600000,"values":{"once":2}}]',
                                       qos=QOS_2)
        # amqtt returned after the whole PUBLISH, PUBREC, PUBREL, PUBCOMP flow.
        assert message.pubrec_packet is not None and message.pubcomp_packet is not None
        assert await stored(gateway, tenant, name) == {"once": "2"}
        assert await rows_of(gateway, tenant, name, "once") == 1
        await client.publish("v1/devices/me/telemetry", b'{"next":1}', qos=QOS_2)
        assert await rows_of(gateway, tenant, name, "once") == 1
        assert await rows_of(gateway, tenant, name, "next") == 1


async def test_attributes_update_push_and_request(gateway, management, tenant, device, mqtt_port) -> None:
    name, token = device
    async with connected(mqtt_port, token) as client:
        granted = await client.subscribe([("v1/devices/me/attributes", QOS_1),
                                          ("v1/devices/me/attributes/response/+", QOS_1)])
        assert granted == [QOS_1, QOS_1]
        await client.publish("v1/devices/me/attributes", b'{"fw":"2.0.1","battery":87}', qos=QOS_1)

        async with management.post(f"/v5/iot/{tenant.project_id}/devices/{await device_id(gateway, tenant, name)}"
                                   "/attributes", params={"scope": "SHARED_SCOPE"}, json={"target": 21.5},
                                   headers={"X-Auth-Token": tenant.token}) as resp:
            assert resp.status == 200
        pushed = await next_message(client)
        assert (pushed.topic, orjson.loads(pushed.data)) == ("v1/devices/me/attributes", {"target": 21.5})
        assert pushed.qos == QOS_1

        await client.publish("v1/devices/me/attributes/request/3", b'{"clientKeys":"fw,battery","sharedKeys":"target"}',
                             qos=QOS_1)
        answer = await next_message(client)
        assert answer.topic == "v1/devices/me/attributes/response/3"
        # "2.0.1" is not a number, so it stays a string; battery was stored as a number.
        assert orjson.loads(answer.data) == {"client": {"fw": "2.0.1", "battery": 87}, "shared": {"target": 21.5}}

        await client.publish("v1/devices/me/attributes/request/4", b'{"sharedKeys":"nothing-here"}', qos=QOS_1)
        answer = await next_message(client)
        assert (answer.topic, orjson.loads(answer.data)) == ("v1/devices/me/attributes/response/4", {})


async def test_server_side_rpc_answered_by_the_device(gateway, management, tenant, device, mqtt_port) -> None:
    name, token = device
    async with connected(mqtt_port, token) as client:
        assert await client.subscribe([("v1/devices/me/rpc/request/+", QOS_1)]) == [QOS_1]

        async def operator_call() -> tuple[int, object]:
            async with management.post(f"/v5/iot/{tenant.project_id}/devices/"
                                       f"{await device_id(gateway, tenant, name)}/commands",
                                       json={"method": "getTemperature", "params": {"unit": "C"}, "timeout": 5000},
                                       headers={"X-Auth-Token": tenant.token}) as resp:
                return resp.status, orjson.loads(await resp.read())

        call = asyncio.ensure_future(operator_call())
        try:
            request = await next_message(client)
            assert request.topic.startswith("v1/devices/me/rpc/request/")
            assert orjson.loads(request.data) == {"method": "getTemperature", "params": {"unit": "C"}}
            request_id = request.topic.rsplit("/", 1)[1]
            await client.publish(f"v1/devices/me/rpc/response/{request_id}", b'{"temperature":22.5}', qos=QOS_1)
            async with asyncio.timeout(10):
                assert await call == (200, {"response": {"temperature": 22.5}})
        finally:
            if not call.done():
                call.cancel()


async def test_refused_token_raises_connect_error(mqtt_port) -> None:
    client = new_client()
    try:
        with pytest.raises(ConnectError) as refused:
            async with asyncio.timeout(10):
                await client.connect(f"mqtt://no-such-{secrets.token_hex(4)}@127.0.0.1:{mqtt_port}/")
        assert refused.value.return_code == 5  # not authorised (spec 3.1)
    finally:
        await close(client)
