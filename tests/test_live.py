"""fleetgate.core.live with an in-memory bus: batches leave in order, only once committed and
only for watched devices; a full outbox drops its oldest updates and counts them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fleetgate.core.errors import Unavailable
from fleetgate.core.live import CommittedFeed, Feed, LiveHub, Outbox, Subscription
from fleetgate.core.telemetry_model import (
    AttributeMessage,
    AttributeScope,
    KeyValue,
    Reading,
    TelemetryMessage,
    ValueType,
)
from tests.fakes import LoopbackBus


class GatedWriter:
    """Each batch commits when the test says so; one may fail."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Future[None]] = []

    async def write(self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]) -> None:
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate


def message(device: str, ts: int, **values: int) -> TelemetryMessage:
    return TelemetryMessage(device, (Reading(ts, tuple(KeyValue(k, ValueType.LONG, v) for k, v in values.items())),))


@pytest.fixture
async def hub() -> LiveHub:
    hub = LiveHub(LoopbackBus(), process_id="test")
    hub.start()
    yield hub
    await hub.close()


def subscribe(hub: LiveHub, outbox: Outbox, device: str, cmd_id: int = 1, keys: frozenset[str] | None = None,
              feed: Feed = Feed.TIMESERIES) -> Subscription:
    subscription = Subscription(outbox, cmd_id, device, feed, keys)
    hub.add(subscription)
    subscription.answer({})
    return subscription


async def test_batches_leave_in_order_once_committed(hub: LiveHub) -> None:
    outbox = Outbox(100)
    subscribe(hub, outbox, "d1")
    assert [u for _, u in await outbox.take()] == [
        {"subscriptionId": 1, "errorCode": 0, "errorMsg": None, "data": {}}]
    writer = GatedWriter()
    feed = CommittedFeed(writer, hub)
    first = asyncio.create_task(feed.write([message("d1", 1, t=1)], []))
    second = asyncio.create_task(feed.write([message("d1", 2, t=2), message("d2", 2, t=9)], []))
    third = asyncio.create_task(feed.write([message("d1", 3, t=3)], []))
    await asyncio.sleep(0)
    # The second batch commits first: it waits for the first. The third fails: nothing of it.
    writer.gates[1].set_result(None)
    await second
    writer.gates[2].set_exception(Unavailable())
    with pytest.raises(Unavailable):
        await third
    assert not outbox._items  # nothing left while the first batch is uncommitted
    writer.gates[0].set_result(None)
    await first
    assert [u["data"] for _, u in await outbox.take()] == [{"t": [[1, "1"]]}, {"t": [[2, "2"]]}]


async def test_keys_feeds_and_unwatched_devices(hub: LiveHub) -> None:
    outbox = Outbox(100)
    subscribe(hub, outbox, "d1", 1, frozenset({"a"}))
    subscribe(hub, outbox, "d1", 2, feed=Feed.CLIENT_ATTRIBUTES)
    await outbox.take()
    feed = CommittedFeed(_Stored(), hub)
    attributes = AttributeMessage("d1", AttributeScope.CLIENT, 7, (KeyValue("fw", ValueType.STRING, "1.0"),
                                                                     KeyValue("on", ValueType.BOOLEAN, True)))
    shared = AttributeMessage("d1", AttributeScope.SHARED, 7, (KeyValue("x", ValueType.LONG, 1),))
    await feed.write([message("d1", 5, a=1, b=2), message("other", 5, a=3)], [attributes, shared])
    assert [u for _, u in await outbox.take()] == [
        {"subscriptionId": 1, "errorCode": 0, "errorMsg": None, "data": {"a": [[5, "1"]]}},
        {"subscriptionId": 2, "errorCode": 0, "errorMsg": None, "data": {"fw": [[7, "1.0"]], "on": [[7, "true"]]}},
    ]
    # Only watched devices' updates go on the bus.
    sent = [e for e in hub._bus.sent if e["t"] == "u"]  # type: ignore[attr-defined]
    assert [device for e in sent for device, _, _ in e["x"]] == ["d1", "d1"]
    hub.remove(outbox)
    assert not hub.watching


async def test_first_answer_before_the_updates_that_came_meanwhile(hub: LiveHub) -> None:
    outbox = Outbox(100)
    subscription = Subscription(outbox, 3, "d1", Feed.TIMESERIES, None)
    hub.add(subscription)
    feed = CommittedFeed(_Stored(), hub)
    await feed.write([message("d1", 10, a=1)], [])
    await feed.write([message("d1", 11, a=2)], [])
    subscription.answer({"a": [[10, "1"]]})  # read after the first point's commit
    assert [u["data"] for _, u in await outbox.take()] == [{"a": [[10, "1"]]}, {"a": [[11, "2"]]}]


async def test_a_full_outbox_drops_the_oldest() -> None:
    outbox = Outbox(3)
    for n in range(5):
        outbox.offer({"n": n}, 1.0)
    assert outbox.dropped == 2
    assert [u["n"] for _, u in await outbox.take()] == [2, 3, 4]
    outbox.close()
    assert await outbox.take() == []


async def test_other_processes_interest_lapses(hub: LiveHub) -> None:
    hub.receive({"t": "i", "p": "elsewhere", "d": ["d9"]})
    assert hub.watched("d9") and hub.watching
    hub._remote["d9"] = 0.0  # its announcement ran out: the process died, or its subscriber left
    assert not hub.watched("d9")


class _Stored:
    async def write(self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]) -> None:
        pass
