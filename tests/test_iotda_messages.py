"""IoTDA's messages down (CreateMessage) to a device that is offline: cached PENDING, delivered
when it next connects within the message's ttl (then DELIVERED), TIMEOUT after it; a ttl of 0
caches nothing. Driven by paho-mqtt as the device and IoTDA's management JSON as the operator."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.iotda_support import add_secret_device, connect, topic
from tests.support import gateway_settings, running_gateway

SECRET = "AccSecret_0123"


def down(device_id: str, message_id: str, name: str | None, content: object) -> dict[str, object]:
    """IoTDA's messages/down payload."""
    return {"object_device_id": device_id, "id": message_id, "name": name, "content": content}


async def test_a_message_to_an_offline_device_waits_and_goes_when_it_connects(
        gateway, api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-cached"))["device_id"]
    created = await api.call("POST", f"/devices/{device_id}/messages",
                             json={"message_id": "c-1", "name": "first", "message": {"n": 1}})
    assert created.status == 201 and created.body["result"]["status"] == "PENDING"
    second = await api.call("POST", f"/devices/{device_id}/messages", json={"message_id": "c-2", "message": "two"})
    assert second.status == 201
    await gateway.iotda_messages.settled()
    shown = await api.call("GET", f"/devices/{device_id}/messages/c-1")
    assert shown.body["status"] == "PENDING" and shown.body["finished_time"] is None

    device, reason = await connect(clients, mqtt_port, device_id, SECRET)
    assert reason == 0
    # Oldest first, each once, on IoTDA's topic with no subscription.
    for message_id, name, content in (("c-1", "first", {"n": 1}), ("c-2", None, "two")):
        message = await device.next_message()
        assert message.topic == topic(device_id, "messages/down")
        assert orjson.loads(message.payload) == down(device_id, message_id, name, content)
    await gateway.iotda_messages.settled()
    for message_id in ("c-1", "c-2"):
        shown = await api.call("GET", f"/devices/{device_id}/messages/{message_id}")
        assert shown.body["status"] == "DELIVERED" and shown.body["finished_time"] is not None
    # Delivered messages do not go again when the device reconnects; a new one goes at once.
    await device.close()
    device, _ = await connect(clients, mqtt_port, device_id, SECRET)
    assert (await api.call("POST", f"/devices/{device_id}/messages", json={"message_id": "c-3", "message": 3})
            ).status == 201
    message = await device.next_message()
    assert orjson.loads(message.payload) == down(device_id, "c-3", None, 3)


async def test_a_message_past_its_ttl_is_timeout_and_never_sent(gateway, api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-ttl"))["device_id"]
    created = await api.call("POST", f"/devices/{device_id}/messages",
                             json={"message_id": "t-1", "message": "stale", "ttl": 5})
    assert created.status == 201 and created.body["result"]["status"] == "PENDING"
    expires = await gateway.services.pool.fetchval(
        "SELECT expires_at FROM device_messages WHERE device_id = $1 AND id = 't-1'", device_id)
    assert expires == (await gateway.services.pool.fetchval(
        "SELECT created_at FROM device_messages WHERE device_id = $1 AND id = 't-1'", device_id)) + 5 * 60_000
    # Five minutes pass.
    await gateway.services.pool.execute(
        "UPDATE device_messages SET expires_at = $2 WHERE device_id = $1 AND id = 't-1'",
        device_id, int(time.time() * 1000) - 1)
    shown = await api.call("GET", f"/devices/{device_id}/messages/t-1")
    assert shown.body["status"] == "TIMEOUT" and shown.body["finished_time"] is not None
    listed = await api.call("GET", f"/devices/{device_id}/messages")
    assert [(m["message_id"], m["status"]) for m in listed.body["messages"]] == [("t-1", "TIMEOUT")]

    device, _ = await connect(clients, mqtt_port, device_id, SECRET)
    assert (await api.call("POST", f"/devices/{device_id}/messages", json={"message_id": "t-2", "message": "fresh"})
            ).status == 201
    # The expired message, older, would have come first.
    message = await device.next_message()
    assert orjson.loads(message.payload) == down(device_id, "t-2", None, "fresh")
    await gateway.iotda_messages.settled()
    assert await gateway.services.pool.fetchval(
        "SELECT status FROM device_messages WHERE device_id = $1 AND id = 't-1'", device_id) == "TIMEOUT"


async def test_a_ttl_of_zero_caches_nothing(gateway, api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-ttl0"))["device_id"]
    created = await api.call("POST", f"/devices/{device_id}/messages",
                             json={"message_id": "z-1", "message": "now or never", "ttl": 0})
    assert created.status == 201
    await gateway.iotda_messages.settled()
    shown = await api.call("GET", f"/devices/{device_id}/messages/z-1")
    assert shown.body["status"] == "FAILED"
    assert shown.body["error_info"] == {"error_code": "IOTDA.014016", "error_msg": "The device is not online"}
    device, _ = await connect(clients, mqtt_port, device_id, SECRET)
    assert (await api.call("POST", f"/devices/{device_id}/messages",
                           json={"message_id": "z-2", "message": "online", "ttl": 0})).status == 201
    message = await device.next_message()
    assert orjson.loads(message.payload) == down(device_id, "z-2", None, "online")
    await gateway.iotda_messages.settled()
    assert (await api.call("GET", f"/devices/{device_id}/messages/z-2")).body["status"] == "DELIVERED"


@pytest.mark.parametrize("ttl", [7, 1445, -5, "60", True])
async def test_a_ttl_that_is_not_a_multiple_of_five_minutes_up_to_a_day_is_refused(api, ttl) -> None:
    device_id = (await add_secret_device(api, f"node-bad-ttl-{abs(hash(str(ttl)))}"))["device_id"]
    reply = await api.call("POST", f"/devices/{device_id}/messages", json={"message": "x", "ttl": ttl})
    assert reply.status == 400 and reply.body["error_code"].startswith("IOTDA.")
    listed = await api.call("GET", f"/devices/{device_id}/messages")
    assert listed.body["messages"] == []


async def test_the_gateway_that_holds_the_device_delivers_it(database_url, tmp_path, api, clients) -> None:
    """Created through one gateway, the device connected to another on the same database."""
    device_id = (await add_secret_device(api, "node-roaming"))["device_id"]
    async with running_gateway(database_url, gateway_settings(str(tmp_path))) as other:
        port = next(int(listener.url.rsplit(":", 1)[1]) for listener in other.listeners if listener.name == "mqtt")
        device, reason = await connect(clients, port, device_id, SECRET)
        assert reason == 0
        created = await api.call("POST", f"/devices/{device_id}/messages", json={"message_id": "r-1", "message": 1})
        assert created.status == 201 and created.body["result"]["status"] == "PENDING"
        message = await device.next_message()
        assert orjson.loads(message.payload) == down(device_id, "r-1", None, 1)
        await other.iotda_messages.settled()
        assert (await api.call("GET", f"/devices/{device_id}/messages/r-1")).body["status"] == "DELIVERED"
        await device.close()
