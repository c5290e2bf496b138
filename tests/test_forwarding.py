"""Forwarding rules end to end on the session's gateway: managed through IoTDA's routing-rule API,
delivered to a local HTTP receiver as IoTDA's push JSON, filtered by the where subset, device
events, dead letters and their replay."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.forwarding_support import Receiver, forward, points
from tests.management_client import assert_error
from tests.support import provision_device


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(secret="s3cret")
    await r.start()
    yield r
    await r.stop()


async def send(http: aiohttp.ClientSession, token: str, body: Any) -> None:
    async with http.post(f"/api/v1/{token}/telemetry", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def test_property_reports_reach_the_receiver_as_iotda_json(gateway, http, api, tenant, receiver) -> None:
    _, action_id = await forward(api, receiver.url)
    device = await provision_device(http, gateway, tenant)
    await send(http, device.token, {"ts": 1_700_000_000_123, "values": {"temperature": 21.5, "on": True}})
    await receiver.wait_for(lambda: len(receiver.notifications) >= 1)
    (note,) = receiver.notifications
    assert set(note) >= {"resource", "event", "event_time", "notify_data"}
    assert (note["resource"], note["event"], note["event_time"]) == ("device.property", "report", "20231114T221320Z")
    header = note["notify_data"]["header"]
    assert header["device_id"] == device.id and header["product_id"] == tenant.product_id and header["node_id"]
    assert note["notify_data"]["body"] == {"services": [{
        "service_id": "telemetry", "properties": {"temperature": 21.5, "on": True},
        "event_time": "2023-11-14T22:13:20.123Z"}]}
    assert receiver.bad_signatures == 0 and list(receiver.message_ids.values()) == [1]
    shown = await api.call("GET", f"/routing-rule/actions/{action_id}")
    assert shown.body["channel_detail"]["http_forwarding"]["token"] == "******"
    # Sealed at rest, as provision secrets are: the database never holds it in clear.
    stored = await gateway.services.pool.fetchval("SELECT detail::text FROM forwarding_actions WHERE id = $1",
                                                  action_id)
    assert "s3cret" not in stored and "sealed:v1:" in stored


async def test_where_forwards_exactly_the_matching_messages(gateway, http, api, tenant, receiver) -> None:
    await forward(api, receiver.url, where="notify_data.body.services[0].properties.temperature > 30 "
                                           "AND NOT notify_data.body.services[0].properties.mode = 'off'")
    device = await provision_device(http, gateway, tenant)
    sent = [(t, mode) for t in (10, 31, 50, 29, 45) for mode in ("on", "off")]
    for i, (t, mode) in enumerate(sent):
        await send(http, device.token, {"ts": 1_700_000_000_000 + i, "values": {"temperature": t, "mode": mode}})
    wanted = {(t, "on") for t, mode in sent if t > 30 and mode != "off"}
    await receiver.wait_for(lambda: len(receiver.notifications) >= len(wanted))
    # The last message sent matches: once it is here, every earlier one has been decided.
    got = {(n["notify_data"]["body"]["services"][0]["properties"]["temperature"],
            n["notify_data"]["body"]["services"][0]["properties"]["mode"]) for n in receiver.notifications}
    assert got == wanted and len(receiver.notifications) == len(wanted)


@pytest.mark.parametrize("where", ["concat(a, 'b') = 'ab'", "a + 1 > 2", "a IN (1, 2)", "temperature >"])
async def test_where_outside_the_subset_is_refused_at_creation(api, where) -> None:
    reply = await api.call("POST", "/routing-rule/rules", json={
        "rule_name": "bad", "subject": {"resource": "device.property", "event": "report"}, "where": where})
    assert_error(reply, 400, "IOTDA.000006")


async def test_unknown_subject_and_channel_are_refused(api) -> None:
    reply = await api.call("POST", "/routing-rule/rules", json={
        "rule_name": "bad", "subject": {"resource": "device.nothing", "event": "report"}})
    assert_error(reply, 400, "IOTDA.000006")
    rule = await api.call("POST", "/routing-rule/rules", json={
        "rule_name": "ok", "subject": {"resource": "device", "event": "create"}})
    reply = await api.call("POST", "/routing-rule/actions", json={
        "rule_id": rule.body["rule_id"], "channel": "KAFKA_FORWARDING", "channel_detail": {}})
    assert_error(reply, 400, "IOTDA.000006")
    reply = await api.call("POST", "/routing-rule/actions", json={
        "rule_id": rule.body["rule_id"], "channel": "HTTP_FORWARDING",
        "channel_detail": {"http_forwarding": {"url": "ftp://x"}}})
    assert_error(reply, 400, "IOTDA.000006")


async def test_device_events(gateway, http, api, tenant, receiver) -> None:
    for event in ("create", "delete"):
        await forward(api, receiver.url, resource="device", event=event)
    created = await api.create_device("ev-" + secrets.token_hex(3))
    deleted = await api.call("DELETE", f"/devices/{created['device_id']}")
    assert deleted.status == 204
    await receiver.wait_for(lambda: len(receiver.notifications) >= 2)
    # Two rules, two actions: order is kept per device within one action, not across actions.
    assert sorted((n["resource"], n["event"]) for n in receiver.notifications) == [
        ("device", "create"), ("device", "delete")]
    assert {n["notify_data"]["header"]["device_id"] for n in receiver.notifications} == {created["device_id"]}
    create = next(n for n in receiver.notifications if n["event"] == "create")
    assert create["notify_data"]["body"]["device_name"] == created["device_name"]


async def test_status_updates(gateway, http, api, tenant, receiver) -> None:
    await forward(api, receiver.url, resource="device.status", event="update")
    device = await provision_device(http, gateway, tenant)
    await send(http, device.token, {"t": 1})  # a request: the device is ONLINE
    await gateway.presence.flush()
    await receiver.wait_for(lambda: len(receiver.notifications) >= 1)
    note = receiver.notifications[0]
    assert (note["resource"], note["event"]) == ("device.status", "update")
    assert note["notify_data"]["header"]["device_id"] == device.id
    assert note["notify_data"]["body"]["status"] == "ONLINE"


async def test_failed_deliveries_are_dead_lettered_and_replayed(gateway, http, api, tenant) -> None:
    receiver = Receiver(secret="s3cret")  # not started yet: deliveries fail
    _, action_id = await forward(api, receiver.url, timeout=1)
    device = await provision_device(http, gateway, tenant)
    await send(http, device.token, {"ts": 1_700_000_000_000, "values": {"n": 1}})
    store = gateway._forwarding.store  # noqa: SLF001
    # Dead-letter it as the forwarder does after its attempts (a claim at the end of time takes the
    # lane whoever holds it), then list and replay it.
    lane = await store.claim(action_id, "test-owner", 2**62, 1000, 10)
    assert lane is not None and len(lane.items) == 1
    await store.dead_letter(lane.items, "attempts", "refused", 1)
    listed = await api.call("GET", f"/routing-rule/actions/{action_id}/dead-letters")
    assert listed.status == 200 and listed.body["count"] == 1
    (dead,) = listed.body["dead_letters"]
    assert (dead["reason"], dead["notifications"], dead["device_ids"]) == ("attempts", 1, [device.id])
    await store.release(lane, "test-owner")
    await receiver.start()
    try:
        replayed = await api.call("POST", f"/routing-rule/actions/{action_id}/dead-letters/replay")
        assert replayed.status == 200 and replayed.body == {"replayed": 1}
        await receiver.wait_for(lambda: len(receiver.notifications) >= 1)
        assert points(receiver.notifications) == {(device.id, "n", "2023-11-14T22:13:20.000Z"): 1}
    finally:
        await receiver.stop()
