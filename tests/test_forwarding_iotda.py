"""Forwarding what an IoTDA device sends, end to end with paho-mqtt as the device: a message up
(sys/messages/up) as IoTDA's device message report, and a property report under the device's own
service ids, as IoTDA's device property report."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from tests.forwarding_support import Receiver, forward
from tests.iotda_support import add_secret_device, connect, topic

SECRET = "AccSecret_0123"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(secret="s3cret")
    await r.start()
    yield r
    await r.stop()


async def test_a_message_up_is_forwarded_as_a_device_message_report(
        gateway, api, tenant, mqtt_port, clients, receiver) -> None:
    await forward(api, receiver.url, resource="device.message", event="report")
    created = await add_secret_device(api, "node-msg-fwd")
    device_id = created["device_id"]
    device, reason = await connect(clients, mqtt_port, device_id, SECRET)
    assert reason == 0
    # An event is kept in the same log, but is not a message report: not forwarded.
    await device.publish(topic(device_id, "events/up"), orjson.dumps({"services": [
        {"service_id": "$log", "event_type": "log_report", "paras": {"content": "hello"}}]}))
    await device.publish(topic(device_id, "messages/up"),
                         orjson.dumps({"id": "m-1", "name": "alarm", "content": {"level": 3}}))
    await device.publish(topic(device_id, "messages/up"), b"raw text, not JSON")
    await receiver.wait_for(lambda: len(receiver.notifications) >= 2)
    first, second = receiver.notifications
    for note in (first, second):
        assert (note["resource"], note["event"]) == ("device.message", "report")
        header = note["notify_data"]["header"]
        assert header["device_id"] == device_id and header["product_id"] == tenant.product_id
        assert header["node_id"] == created["node_id"]
        assert note["notify_data"]["body"]["topic"] == f"$oc/devices/{device_id}/sys/messages/up"
        assert len(note["event_time"]) == 16 and note["event_time"].endswith("Z")
    assert first["notify_data"]["body"]["content"] == {"level": 3} and first["request_id"] == "m-1"
    assert second["notify_data"]["body"]["content"] == "raw text, not JSON" and second["request_id"]
    assert receiver.bad_signatures == 0 and len(receiver.notifications) == 2
    await device.close()


async def test_a_property_report_carries_the_devices_own_service_ids(
        gateway, api, tenant, mqtt_port, clients, receiver) -> None:
    await forward(api, receiver.url)
    device_id = (await add_secret_device(api, "node-prop-fwd"))["device_id"]
    device, reason = await connect(clients, mqtt_port, device_id, SECRET)
    assert reason == 0
    body = {"services": [
        {"service_id": "smokeDetector", "properties": {"alarm": 1, "temperature": 23.5},
         "event_time": "20231114T221320Z"},
        {"service_id": "battery", "properties": {"level": 80}, "event_time": "2023-11-14T22:13:21.250Z"},
    ]}
    await device.publish(topic(device_id, "properties/report"), orjson.dumps(body))
    await device.publish(topic(device_id, "properties/report"), orjson.dumps({"services": [
        {"service_id": "battery", "properties": {"level": 79}, "event_time": "20231114T221330Z"}]}))
    await receiver.wait_for(lambda: len(receiver.notifications) >= 2)
    first, second = receiver.notifications
    assert (first["resource"], first["event"]) == ("device.property", "report")
    assert first["notify_data"]["header"]["device_id"] == device_id
    assert first["notify_data"]["body"] == {"services": [
        {"service_id": "smokeDetector", "properties": {"alarm": 1, "temperature": 23.5},
         "event_time": "2023-11-14T22:13:20.000Z"},
        {"service_id": "battery", "properties": {"level": 80}, "event_time": "2023-11-14T22:13:21.250Z"},
    ]}
    assert second["notify_data"]["body"] == {"services": [
        {"service_id": "battery", "properties": {"level": 79}, "event_time": "2023-11-14T22:13:30.000Z"}]}
    await device.close()
