"""The MQTT device transport with paho-mqtt, MQTT 3.1.1 and 5: ThingsBoard's topics end to end."""

from __future__ import annotations

import asyncio
import secrets

import orjson
import paho.mqtt.client as mqtt
import pytest

from tests.paho_async import reason_value
from tests.support import Tenant, provision
from tests.telemetry_support import stored

VERSIONS = [pytest.param(mqtt.MQTTv311, id="3.1.1"), pytest.param(mqtt.MQTTv5, id="5")]


@pytest.fixture
async def device(http, tenant: Tenant) -> tuple[str, str]:
    name, result = await provision(http, tenant)
    return name, result["credentialsValue"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_telemetry_is_acknowledged_once_stored(gateway, tenant, device, clients, mqtt_port, version) -> None:
    name, token = device
    client = clients(version=version)
    reason, _ = await client.connect(mqtt_port, username=token)
    assert reason_value(reason) == 0
    ack = await client.publish("v1/devices/me/telemetry", b'{"temperature":21.5,"humidity":40,"on":true}')
    assert reason_value(ack) == 0
    # The PUBACK came after the commit: the rows are already there.
    assert await stored(gateway, tenant, name) == {"temperature": "21.5", "humidity": "40", "on": "true"}
    await client.publish("v2/t", b'[{"ts":1767225600000,"values":{"short":1}}]')
    assert (await stored(gateway, tenant, name))["short"] == "1"


# ThingsBoard (spec 3.1): a user name without a password that matches nothing is
# BAD_USER_NAME_OR_PASSWORD on MQTT 5, return code 5 on 3.1.1 (which paho reports as
# the reason it stands for, 0x87; tests/test_mqtt_wire.py checks the bytes).
@pytest.mark.parametrize(("version", "code"), [(mqtt.MQTTv311, 0x87), (mqtt.MQTTv5, 0x86)])
async def test_unknown_token_is_refused(clients, mqtt_port, version, code) -> None:
    client = clients(version=version)
    reason, _ = await client.connect(mqtt_port, username="no-such-token")
    assert reason_value(reason) == code


@pytest.mark.parametrize("version", VERSIONS)
async def test_mqtt_basic_credentials(http, tenant, clients, mqtt_port, version) -> None:
    client_id, user = "cid-" + secrets.token_hex(4), "user-" + secrets.token_hex(4)
    _, result = await provision(http, tenant, credentialsType="MQTT_BASIC", clientId=client_id, username=user,
                                password="pw")
    assert result["status"] == "SUCCESS"
    good = clients(client_id, version=version)
    assert reason_value((await good.connect(mqtt_port, username=user, password="pw"))[0]) == 0
    bad = clients(client_id, version=version)
    reason, _ = await bad.connect(mqtt_port, username=user, password="wrong")
    assert reason_value(reason) == (0x87 if version == mqtt.MQTTv311 else 0x86)


@pytest.mark.parametrize("version", VERSIONS)
async def test_provisioning_over_mqtt(gateway, tenant, clients, mqtt_port, version) -> None:
    client = clients(version=version)
    assert reason_value((await client.connect(mqtt_port, username="provision"))[0]) == 0
    await client.subscribe("/provision/response")
    request = {"deviceName": "mqtt-prov-" + secrets.token_hex(3), "provisionDeviceKey": tenant.provision_key,
               "provisionDeviceSecret": tenant.provision_secret, "credentialsType": "ACCESS_TOKEN",
               "token": "tok-" + secrets.token_hex(6)}
    await client.publish("/provision/request", orjson.dumps(request))
    message = await client.next_message()
    assert message.topic == "/provision/response"
    assert message.payload == orjson.dumps(
        {"credentialsValue": request["token"], "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"})
    # The session is closed a configured while after the answer.
    await client.wait_disconnected()


async def test_provision_session_may_not_send_telemetry(clients, mqtt_port) -> None:
    client = clients(version=mqtt.MQTTv5)
    await client.connect(mqtt_port, username="provision")
    assert reason_value(await client.publish("v1/devices/me/telemetry", b'{"a":1}')) == 0x90
    await client.wait_disconnected()


@pytest.mark.parametrize("version", VERSIONS)
async def test_attribute_request_and_shared_update_push(gateway, management, tenant, device, clients, mqtt_port,
                                                        version) -> None:
    name, token = device
    client = clients(version=version)
    await client.connect(mqtt_port, username=token)
    await client.subscribe("v1/devices/me/attributes")
    await client.subscribe("v1/devices/me/attributes/response/+")
    await client.publish("v1/devices/me/attributes", b'{"fw":"1.2"}')

    device_id = await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE name = $1 AND project_id = $2", name, tenant.project_id)
    async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/attributes",
                               params={"scope": "SHARED_SCOPE"}, json={"interval": 30},
                               headers={"X-Auth-Token": tenant.token}) as resp:
        assert resp.status == 200
    pushed = await client.next_message()
    assert (pushed.topic, orjson.loads(pushed.payload)) == ("v1/devices/me/attributes", {"interval": 30})

    await client.publish("v1/devices/me/attributes/request/7", b'{"clientKeys":"fw","sharedKeys":"interval"}')
    answer = await client.next_message()
    assert answer.topic == "v1/devices/me/attributes/response/7"
    assert orjson.loads(answer.payload) == {"client": {"fw": 1.2}, "shared": {"interval": 30}}


@pytest.mark.parametrize("version", VERSIONS)
async def test_server_side_rpc_answered_by_the_device(gateway, management, tenant, device, clients, mqtt_port,
                                                      version) -> None:
    name, token = device
    client = clients(version=version)
    await client.connect(mqtt_port, username=token)
    await client.subscribe("v1/devices/me/rpc/request/+")
    device_id = await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE name = $1 AND project_id = $2", name, tenant.project_id)

    async def operator_call():
        async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands",
                                   json={"method": "setGpio", "params": {"pin": 4}, "timeout": 5000},
                                   headers={"X-Auth-Token": tenant.token}) as resp:
            return resp.status, orjson.loads(await resp.read())

    call = asyncio.ensure_future(operator_call())
    request = await client.next_message()
    assert request.topic.startswith("v1/devices/me/rpc/request/")
    assert orjson.loads(request.payload) == {"method": "setGpio", "params": {"pin": 4}}
    request_id = request.topic.rsplit("/", 1)[1]
    await client.publish(f"v1/devices/me/rpc/response/{request_id}", b'{"pin":4,"value":1}')
    assert await call == (200, {"response": {"pin": 4, "value": 1}})


async def test_rpc_to_a_device_not_connected_is_409(gateway, management, tenant, device) -> None:
    name, _ = device
    device_id = await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE name = $1 AND project_id = $2", name, tenant.project_id)
    async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands",
                               json={"method": "reboot"}, headers={"X-Auth-Token": tenant.token}) as resp:
        assert resp.status == 409
        assert (await resp.json())["error_code"] == "IOTDA.014016"


@pytest.mark.parametrize("version", VERSIONS)
async def test_get_session_limits(gateway, device, clients, mqtt_port, version) -> None:
    _, token = device
    client = clients(version=version)
    await client.connect(mqtt_port, username=token)
    await client.subscribe("v1/devices/me/rpc/response/+")
    await client.publish("v1/devices/me/rpc/request/1", b'{"method":"getSessionLimits","params":{"timeout":5000}}')
    answer = await client.next_message()
    assert answer.topic == "v1/devices/me/rpc/response/1"
    assert orjson.loads(answer.payload) == {
        "maxPayloadSize": gateway.settings.max_payload_bytes,
        "maxInflightMessages": gateway.settings.mqtt_max_inflight,
        "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
    }


async def test_mqtt5_reason_codes_for_unknown_topics_and_bad_payloads(device, clients, mqtt_port) -> None:
    _, token = device
    client = clients(version=mqtt.MQTTv5)
    await client.connect(mqtt_port, username=token)
    assert reason_value(await client.publish("v1/devices/other/telemetry", b'{"a":1}')) == 0x90
    assert reason_value(await client.publish("v1/devices/me/telemetry", b"{not json")) == 0x99
    assert reason_value(await client.publish("v1/devices/me/telemetry", b'{"ok":1}')) == 0


async def test_mqtt311_malformed_payload_closes_the_connection(device, clients, mqtt_port) -> None:
    _, token = device
    client = clients(version=mqtt.MQTTv311)
    await client.connect(mqtt_port, username=token)
    client.client.publish("v1/devices/me/telemetry", b"{not json", qos=1)
    await client.wait_disconnected()


@pytest.mark.parametrize("version", VERSIONS)
async def test_subscriptions_are_limited_to_the_device_s_own_topics(device, clients, mqtt_port, version) -> None:
    _, token = device
    client = clients(version=version)
    await client.connect(mqtt_port, username=token)
    granted = await client.subscribe("v1/devices/me/rpc/request/+", qos=2)
    refused = await client.subscribe("v1/devices/+/telemetry")
    assert [reason_value(r) for r in granted] == [1]  # QoS 2 asked, 1 granted, as ThingsBoard
    assert reason_value(refused[0]) >= 0x80


@pytest.mark.parametrize("version", VERSIONS)
async def test_qos2_is_stored_once_and_completed(gateway, tenant, device, clients, mqtt_port, version) -> None:
    name, token = device
    client = clients(version=version)
    await client.connect(mqtt_port, username=token)
    await client.publish("v1/devices/me/telemetry", b'{"exactly_once":1}', qos=2)
    assert (await stored(gateway, tenant, name))["exactly_once"] == "1"
