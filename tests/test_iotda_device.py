"""Huawei IoTDA's device side over MQTT, driven by paho-mqtt exactly as the spec states the
contract (tests/iotda_support.py): secret devices, the $oc topics both ways, and the operator's
calls that reach them (CreateCommand, UpdateProperties, ListProperties, CreateMessage, the shadow)."""

from __future__ import annotations

import asyncio
import calendar
import time

import aiohttp
import orjson
import paho.mqtt.client as mqtt
import pytest

from prometheus_client import REGISTRY

from fleetgate.core import metrics
from fleetgate.storage.retention import RetentionStore
from tests.iotda_support import add_secret_device, connect, hour, log_report, report, request_id_of, topic
from tests.management_client import Management, assert_error
from tests.paho_async import reason_value
from tests.support import gateway_settings, new_tenant, provision_token, running_gateway


async def latest(gateway, device_id: str, key: str) -> tuple[int, object] | None:
    row = await gateway.services.pool.fetchrow(
        "SELECT t.ts, coalesce(t.dbl_v::text, t.long_v::text, t.str_v) AS v FROM ts_kv t "
        "JOIN key_dictionary k ON k.key_id = t.key WHERE t.device_id = $1 AND k.key = $2 ORDER BY t.ts DESC LIMIT 1",
        device_id, key)
    return (row["ts"], row["v"]) if row else None


async def test_a_secret_device_connects_and_its_reports_are_stored(gateway, api, mqtt_port, clients) -> None:
    added = await add_secret_device(api, "node-report")
    device_id = added["device_id"]
    assert device_id == f"{api.tenant.product_id}_node-report"
    assert added["auth_info"]["auth_type"] == "SECRET" and added["auth_info"]["secret"] == "AccSecret_0123"
    device, reason = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    assert reason == 0
    before = int(time.time() * 1000)
    assert reason_value(await device.publish(topic(device_id, "properties/report"),
                                             report("Sensor", {"temperature": 21.5, "humidity": 40, "mode": "eco"}))) == 0
    ts, value = await latest(gateway, device_id, "temperature")
    assert value == "21.5" and before <= ts <= int(time.time() * 1000)
    assert (await latest(gateway, device_id, "mode"))[1] == "eco"
    # Both of IoTDA's formats, and the SDK's own.
    for stamp, expected in (("20161219T114920Z", "2016-12-19 11:49:20.000"),
                            ("2016-12-19T11:49:21.123Z", "2016-12-19 11:49:21.123"),
                            ("2016-12-19T11:49:22Z", "2016-12-19 11:49:22.000")):
        assert reason_value(await device.publish(topic(device_id, "properties/report"),
                                                 report("Sensor", {"pressure": 1013}, stamp))) == 0
        ms = calendar.timegm(time.strptime(expected[:19], "%Y-%m-%d %H:%M:%S")) * 1000 + int(expected[20:])
        assert (await latest(gateway, device_id, "pressure"))[0] == ms
    # The shadow rebuilds the IoTDA shape from the latest values and the services they came under.
    shadow = await api.call("GET", f"/devices/{device_id}/shadow")
    assert shadow.status == 200
    (sensor,) = shadow.body["shadow"]
    assert sensor["service_id"] == "Sensor"
    assert sensor["reported"]["properties"] == {"temperature": 21.5, "humidity": 40, "mode": "eco", "pressure": 1013}


async def test_a_wrong_secret_or_a_stale_hour_is_refused(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-refused"))["device_id"]
    _, reason = await connect(clients, mqtt_port, device_id, "NotTheSecret1")
    assert reason != 0
    stale = hour(-3)
    _, reason = await connect(clients, mqtt_port, device_id, "AccSecret_0123", stamp=stale)
    assert reason != 0
    # With the timestamp flag 0 only the password is checked: the stale hour's password is right.
    _, reason = await connect(clients, mqtt_port, device_id, "AccSecret_0123", stamp=stale, check_timestamp=0)
    assert reason == 0
    # One hour either side is accepted.
    _, reason = await connect(clients, mqtt_port, device_id, "AccSecret_0123", stamp=hour(-1))
    assert reason == 0


async def test_the_log_report_after_connect_and_unknown_events_are_accepted(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-events"))["device_id"]
    device, _ = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    unknown_before = metrics.MESSAGES.counts[("mqtt", "iotda_event_unknown")]
    assert reason_value(await device.publish(topic(device_id, "events/up"), log_report(device_id))) == 0
    unknown = orjson.dumps({"object_device_id": device_id, "services": [
        {"service_id": "$made_up", "event_type": "whatever", "event_time": None, "paras": {"x": 1}}]})
    assert reason_value(await device.publish(topic(device_id, "events/up"), unknown)) == 0
    assert not device.disconnected.done()
    assert metrics.MESSAGES.counts[("mqtt", "iotda_event_unknown")] == unknown_before + 1
    events = await api.call("GET", f"/devices/{device_id}/messages", params={"direction": "EVENT"})
    assert events.status == 200
    assert sorted(m["event"] for m in events.body["messages"]) == ["$log/log_report", "$made_up/whatever"]
    # messages/up lands in the message log too.
    body = orjson.dumps({"object_device_id": "", "id": "", "name": "hello", "content": "raw text"})
    assert reason_value(await device.publish(topic(device_id, "messages/up"), body)) == 0
    up = await api.call("GET", f"/devices/{device_id}/messages", params={"direction": "UP"})
    assert [(m["name"], m["message"]) for m in up.body["messages"]] == [("hello", "raw text")]


async def test_time_sync_is_answered_on_events_down(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-time"))["device_id"]
    device, _ = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    request = orjson.dumps({"object_device_id": device_id, "services": [{
        "service_id": "$time_sync", "event_type": "time_sync_request", "event_time": None,
        "paras": {"device_send_time": 1700000000000}}]})
    await device.publish(topic(device_id, "events/up"), request)
    message = await device.next_message()
    assert message.topic == topic(device_id, "events/down")
    (service,) = orjson.loads(message.payload)["services"]
    assert service["service_id"] == "$time_sync" and service["event_type"] == "time_sync_response"
    assert service["paras"]["device_send_time"] == 1700000000000
    assert service["paras"]["server_recv_time"] <= service["paras"]["server_send_time"]


async def test_a_command_is_answered_synchronously(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-command"))["device_id"]
    device, _ = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    call = asyncio.create_task(api.call("POST", f"/devices/{device_id}/commands", json={
        "service_id": "Switch", "command_name": "ON_OFF", "paras": {"value": "ON"}}))
    message = await device.next_message()  # delivered without any SUBSCRIBE
    assert message.topic.startswith(topic(device_id, "commands/request_id="))
    body = orjson.loads(message.payload)
    assert (body["service_id"], body["command_name"], body["paras"]) == ("Switch", "ON_OFF", {"value": "ON"})
    request_id = request_id_of(message.topic)
    await device.publish(topic(device_id, f"commands/response/request_id={request_id}"),
                         orjson.dumps({"result_code": 0, "response_name": "ON_OFF", "paras": {"result": "done"}}))
    reply = await call
    assert reply.status == 200, reply
    assert reply.body == {"command_id": request_id,
                          "response": {"result_code": 0, "response_name": "ON_OFF", "paras": {"result": "done"}}}


async def test_a_command_to_an_offline_device_gets_iotdas_error(api) -> None:
    device_id = (await add_secret_device(api, "node-offline"))["device_id"]
    reply = await api.call("POST", f"/devices/{device_id}/commands", json={
        "service_id": "Switch", "command_name": "ON_OFF", "paras": {}})
    assert_error(reply, 409, "IOTDA.014016")


async def test_properties_set_and_get(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-props"))["device_id"]
    device, _ = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    setting = asyncio.create_task(api.call("PUT", f"/devices/{device_id}/properties", json={
        "services": [{"service_id": "Sensor", "properties": {"interval": 30}}]}))
    message = await device.next_message()
    assert message.topic.startswith(topic(device_id, "properties/set/request_id="))
    assert orjson.loads(message.payload)["services"] == [{"service_id": "Sensor", "properties": {"interval": 30}}]
    await device.publish(topic(device_id, f"properties/set/response/request_id={request_id_of(message.topic)}"),
                         orjson.dumps({"result_code": 0, "result_desc": "Success"}))
    reply = await setting
    assert reply.status == 200 and reply.body["response"] == {"result_code": 0, "result_desc": "Success"}

    getting = asyncio.create_task(api.call("GET", f"/devices/{device_id}/properties",
                                           params={"service_id": "Sensor"}))
    message = await device.next_message()
    assert message.topic.startswith(topic(device_id, "properties/get/request_id="))
    assert orjson.loads(message.payload)["service_id"] == "Sensor"
    services = {"services": [{"service_id": "Sensor", "properties": {"interval": 30}, "event_time": None}]}
    await device.publish(topic(device_id, f"properties/get/response/request_id={request_id_of(message.topic)}"),
                         orjson.dumps(services))
    reply = await getting
    assert reply.status == 200 and reply.body["response"] == services


async def test_messages_down_have_a_status(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-down"))["device_id"]
    device, _ = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    created = await api.call("POST", f"/devices/{device_id}/messages",
                             json={"message_id": "m-1", "name": "greeting", "message": {"text": "hello"}})
    assert created.status == 201 and created.body["message_id"] == "m-1"
    assert created.body["result"]["status"] == "PENDING"
    message = await device.next_message()
    assert message.topic == topic(device_id, "messages/down")
    assert orjson.loads(message.payload) == {"object_device_id": device_id, "id": "m-1", "name": "greeting",
                                             "content": {"text": "hello"}}
    # The status follows the device's PUBACK, written after it: a reading, nothing to await.
    async with asyncio.timeout(10):
        while (shown := await api.call("GET", f"/devices/{device_id}/messages/m-1")).body["status"] == "PENDING":
            await asyncio.sleep(0.02)
    assert shown.body["status"] == "DELIVERED" and shown.body["message"] == {"text": "hello"}
    listed = await api.call("GET", f"/devices/{device_id}/messages")
    assert [m["message_id"] for m in listed.body["messages"]] == ["m-1"]


async def test_the_shadow_desired_properties_reach_the_device_when_it_asks(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-shadow"))["device_id"]
    updated = await api.call("PUT", f"/devices/{device_id}/shadow", json={
        "shadow": [{"service_id": "Sensor", "desired": {"interval": 60}}]})
    assert updated.status == 200, updated
    assert updated.body["shadow"][0]["desired"]["properties"] == {"interval": 60}
    device, _ = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    await device.publish(topic(device_id, "properties/report"), report("Sensor", {"interval": 30}))
    await device.publish(topic(device_id, "shadow/get/request_id=abc-1"), orjson.dumps({"service_id": "Sensor"}))
    message = await device.next_message()
    assert message.topic == topic(device_id, "shadow/get/response/request_id=abc-1")
    answer = orjson.loads(message.payload)
    assert answer["object_device_id"] == device_id
    (sensor,) = answer["shadow"]
    assert sensor["desired"]["properties"] == {"interval": 60}
    assert sensor["reported"]["properties"] == {"interval": 30} and sensor["version"] == 1


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5])
async def test_another_devices_topic_is_refused(api, mqtt_port, clients, version) -> None:
    mine = (await add_secret_device(api, f"node-own-{version}"))["device_id"]
    other = (await add_secret_device(api, f"node-other-{version}"))["device_id"]
    device, _ = await connect(clients, mqtt_port, mine, "AccSecret_0123", version=version)
    refusals = {"protocol": "mqtt", "reason": "not_authorized"}
    before = REGISTRY.get_sample_value("gateway_bad_requests_total", refusals) or 0.0
    if version == mqtt.MQTTv5:
        refused = await device.publish(topic(other, "properties/report"), report("Sensor", {"t": 1}))
        assert reason_value(refused) == 0x87
        assert not device.disconnected.done()
    else:
        device.client.publish(topic(other, "properties/report"), report("Sensor", {"t": 1}), qos=1)
        await device.wait_disconnected()
    assert REGISTRY.get_sample_value("gateway_bad_requests_total", refusals) == before + 1


async def test_show_and_list_report_auth_info_but_never_the_secret(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-show"))["device_id"]
    shown = await api.call("GET", f"/devices/{device_id}")
    assert shown.body["auth_info"]["auth_type"] == "SECRET" and "secret" not in shown.body["auth_info"]
    listed = await api.call("GET", "/devices", params={"device_name": "node-show"})
    assert listed.body["devices"][0]["auth_info"]["auth_type"] == "SECRET"
    assert "AccSecret_0123" not in orjson.dumps([shown.body, listed.body]).decode()
    reset = await api.call("POST", f"/devices/{device_id}/action", params={"action_id": "resetSecret"},
                           json={"secret": "NewSecret_4567", "force_disconnect": False})
    assert reset.status == 200 and reset.body["secret"] == "NewSecret_4567"
    _, reason = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    assert reason != 0
    _, reason = await connect(clients, mqtt_port, device_id, "NewSecret_4567")
    assert reason == 0


async def test_iotdas_command_body_reaches_a_thingsboard_device_as_rpc(api, http, tenant, mqtt_port, clients) -> None:
    token = await provision_token(http, tenant, "tb-iotda-command")
    device_id = (await api.call("GET", "/devices", params={"device_name": "tb-iotda-command"})).body["devices"][0][
        "device_id"]
    device = clients("tb-iotda-command")
    await device.connect(mqtt_port, token)
    await device.subscribe("v1/devices/me/rpc/request/+")
    call = asyncio.create_task(api.call("POST", f"/devices/{device_id}/commands", json={
        "service_id": "Switch", "command_name": "setLight", "paras": {"on": True}}))
    message = await device.next_message()
    assert message.topic.startswith("v1/devices/me/rpc/request/")
    assert orjson.loads(message.payload) == {"method": "setLight", "params": {"on": True}}
    request_id = message.topic.rsplit("/", 1)[1]
    await device.publish(f"v1/devices/me/rpc/response/{request_id}", orjson.dumps({"ok": True}))
    reply = await call
    assert reply.status == 200 and reply.body == {"command_id": request_id, "response": {"ok": True}}
    # The existing body keeps working.
    call = asyncio.create_task(api.call("POST", f"/devices/{device_id}/commands",
                                        json={"method": "getLight", "params": {}}))
    message = await device.next_message()
    await device.publish(f"v1/devices/me/rpc/response/{message.topic.rsplit('/', 1)[1]}", b'{"on": true}')
    assert (await call).body == {"response": {"on": True}}


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5])
async def test_a_malformed_report_is_refused_as_on_thingsboards_topics(api, mqtt_port, clients, version) -> None:
    device_id = (await add_secret_device(api, f"node-malformed-{version}"))["device_id"]
    device, _ = await connect(clients, mqtt_port, device_id, "AccSecret_0123", version=version)
    if version == mqtt.MQTTv5:
        for body in (b"{not json", b'{"services": {}}', b'{"services": [{"properties": {"t": 1}}]}'):
            refused = await device.publish(topic(device_id, "properties/report"), body)
            assert reason_value(refused) == 0x99
        assert not device.disconnected.done()
    else:
        device.client.publish(topic(device_id, "properties/report"), b"{not json", qos=1)
        await device.wait_disconnected()


async def test_u0000_in_json_is_dropped_not_a_server_error(api) -> None:
    device_id = (await add_secret_device(api, "node-nul"))["device_id"]
    created = await api.call("POST", f"/devices/{device_id}/messages", json={"message": {"t\u0000": "a\u0000b"}})
    assert created.status == 201, created
    shown = await api.call("GET", f"/devices/{device_id}/messages/{created.body['message_id']}")
    assert shown.body["message"] == {"t": "ab"}
    updated = await api.call("PUT", f"/devices/{device_id}/shadow",
                             json={"shadow": [{"service_id": "S", "desired": {"k": ["x\u0000"]}}]})
    assert updated.status == 200 and updated.body["shadow"][0]["desired"]["properties"] == {"k": ["x"]}


async def test_the_message_log_is_kept_for_its_retention(gateway, api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-retention"))["device_id"]
    device, _ = await connect(clients, mqtt_port, device_id, "AccSecret_0123")
    await device.publish(topic(device_id, "events/up"), log_report(device_id))
    now = int(time.time() * 1000)
    await RetentionStore(gateway.services.pool, 0, 0, 1).enforce(now)
    assert len((await api.call("GET", f"/devices/{device_id}/messages", params={"direction": "EVENT"}))
               .body["messages"]) == 1
    await RetentionStore(gateway.services.pool, 0, 0, 1).enforce(now + 2 * 86_400_000)
    assert (await api.call("GET", f"/devices/{device_id}/messages", params={"direction": "EVENT"})
            ).body["messages"] == []


async def test_a_command_unanswered_in_time_gets_iotdas_timeout(database_url, tmp_path, clients) -> None:
    settings = gateway_settings(str(tmp_path), iotda_command_timeout_seconds=0.3, http_port=0, coap_port=0)
    async with running_gateway(database_url, settings) as gw:
        tenant = await new_tenant(gw.services)
        port = int(next(l.url for l in gw.listeners if l.name == "mqtt").rsplit(":", 1)[1])
        async with aiohttp.ClientSession(next(l.url for l in gw.listeners if l.name == "management")) as http:
            api = Management(http, tenant)
            device_id = (await add_secret_device(api, "node-silent"))["device_id"]
            device, _ = await connect(clients, port, device_id, "AccSecret_0123")
            reply = await api.call("POST", f"/devices/{device_id}/commands", json={
                "service_id": "Switch", "command_name": "ON_OFF", "paras": {}})
            assert_error(reply, 504, "IOTDA.014111")
            assert (await device.next_message()).topic.startswith(topic(device_id, "commands/request_id="))
