"""The downlink core with its in-process bus: pushes, RPC delivery and replies, ids."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleetgate.core.downlink import Downlink, LocalBus, SessionLimits
from fleetgate.core.errors import DeviceNotConnected, RpcTimeout
from fleetgate.core.model import KeyValue, ValueType


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
