"""The downlink core with its in-process bus: pushes, RPC delivery and replies, ids."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import DeviceNotConnected, RpcTimeout
from fleetgate.core.local_bus import LocalBus
from fleetgate.core.telemetry_model import KeyValue, ValueType


class Channel:
    def __init__(self) -> None:
        self.attributes: list[dict[str, Any]] = []
        self.rpcs: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()

    def push_attributes(self, update: dict[str, Any]) -> None:
        self.attributes.append(update)

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        self.rpcs.put_nowait((request_id, method, params))


def downlink(bus: LocalBus | None = None) -> Downlink:
    bus = bus or LocalBus()
    result = Downlink(SessionLimits(1024, 10), bus, delivery_timeout=0.2)
    bus.receiver = result.receive
    return result


async def test_a_two_way_call_is_pushed_and_answered() -> None:
    link, channel = downlink(), Channel()
    link.attach("d1", channel)
    call = asyncio.create_task(link.call("d1", "ping", {"n": 1}, timeout=5, oneway=False))
    request_id, method, params = await channel.rpcs.get()
    assert (method, params) == ("ping", {"n": 1}) and 0 < request_id < 2**31
    link.rpc_reply("d1", request_id, {"pong": True})
    assert await call == {"pong": True}
    await link.close()


async def test_a_one_way_call_returns_once_delivered() -> None:
    link, channel = downlink(), Channel()
    link.attach("d1", channel)
    assert await link.call("d1", "blink", None, timeout=5, oneway=True) is None
    assert channel.rpcs.qsize() == 1
    await link.close()


async def test_a_device_connected_nowhere_is_refused() -> None:
    link = downlink()
    with pytest.raises(DeviceNotConnected):
        await link.call("absent", "ping", None, timeout=5, oneway=False)
    await link.close()


async def test_a_device_that_does_not_answer_times_out() -> None:
    link, channel = downlink(), Channel()
    link.attach("d1", channel)
    with pytest.raises(RpcTimeout):
        await link.call("d1", "ping", None, timeout=0.3, oneway=False)
    await link.close()


async def test_a_late_or_unknown_reply_is_dropped() -> None:
    link, channel = downlink(), Channel()
    link.attach("d1", channel)
    link.rpc_reply("d1", 12345, "nobody waits")  # published, and nobody takes it
    await link.close()


async def test_attribute_updates_reach_every_channel_of_the_device_only() -> None:
    link, mine, theirs = downlink(), Channel(), Channel()
    link.attach("d1", mine)
    link.attach("d2", theirs)
    await link.attributes_changed("d1", [KeyValue("v", ValueType.LONG, 2)], ["old"])
    assert mine.attributes == [{"v": 2, "deleted": ["old"]}] and theirs.attributes == []
    await link.close()


async def test_malformed_events_are_dropped() -> None:
    link = downlink()
    link.receive({"t": "rpc"})
    link.receive({"no": "kind"})
    await link.close()


class LossyBus(LocalBus):
    """Loses the first ``lose`` events published, as a bus may while it moves to another server;
    and tells which devices this process subscribed to."""

    def __init__(self, lose: int) -> None:
        super().__init__()
        self.lose = lose
        self.published: list[dict[str, Any]] = []
        self.subscribed: list[tuple[str, bool]] = []

    async def publish(self, event: dict[str, Any]) -> None:
        self.published.append(event)
        if self.lose:
            self.lose -= 1
            return
        await super().publish(event)

    def subscribe(self, device_id: str) -> None:
        self.subscribed.append((device_id, True))

    def unsubscribe(self, device_id: str) -> None:
        self.subscribed.append((device_id, False))


async def test_a_request_lost_on_the_bus_is_published_once_more() -> None:
    bus = LossyBus(lose=1)
    link, channel = downlink(bus), Channel()
    link.attach("d1", channel)
    assert await link.call("d1", "blink", None, timeout=5, oneway=True) is None
    assert [e["t"] for e in bus.published] == ["rpc", "rpc"] and channel.rpcs.qsize() == 1
    await link.close()


async def test_a_request_published_twice_is_pushed_once_and_receipted_twice() -> None:
    bus = LossyBus(lose=0)
    link, channel = downlink(bus), Channel()
    bus.receiver = None  # the caller is another process
    link.attach("d1", channel)
    request = {"t": "rpc", "d": "d1", "i": 9, "m": "m", "p": None, "o": "caller", "w": 5}
    link.receive(request)
    link.receive(request)
    await link.close()
    assert channel.rpcs.qsize() == 1
    assert bus.published == [{"t": "delivered", "d": "d1", "i": 9, "a": "caller"}] * 2


async def test_the_bus_is_told_of_a_device_first_attached_and_last_detached() -> None:
    bus = LossyBus(lose=0)
    link, first, second = downlink(bus), Channel(), Channel()
    link.attach("d1", first)
    link.attach("d1", second)
    link.detach("d1", first)
    link.detach("d1", second)
    assert bus.subscribed == [("d1", True), ("d1", False)]
    await link.close()


async def test_a_reply_goes_to_the_address_of_the_call_it_answers() -> None:
    bus = LossyBus(lose=0)
    link, channel = downlink(bus), Channel()
    bus.receiver = None  # nothing comes back: the caller is another process
    link.attach("d1", channel)
    link.receive({"t": "rpc", "d": "d1", "i": 4, "m": "m", "p": None, "o": "caller", "w": 5})
    link.rpc_reply("d1", 4, {"ok": True})
    await link.close()
    assert [(e["t"], e.get("a")) for e in bus.published] == [("delivered", "caller"), ("reply", "caller")]
