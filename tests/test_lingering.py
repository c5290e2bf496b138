"""A device between two connections (fleetgate.core.lingering): a lightweight call made while an
HTTP device is between two RPC polls waits for its next poll, as ThingsBoard keeps such a call
pending for the next RPC subscription, for a short grace only; in one process and across two."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.downlink import Downlink
from fleetgate.core.local_bus import LocalBus
from fleetgate.core.errors import DeviceNotConnected
from tests.fakes import QueueChannel as Channel

DELIVERY = 0.2


class Broadcast:
    """A broadcasting bus (as PostgreSQL NOTIFY) between processes, counting subscriptions."""

    def __init__(self) -> None:
        self.processes: list[Downlink] = []
        self.subscribed: dict[str, int] = {}

    async def publish(self, event: dict[str, Any]) -> None:
        for process in self.processes:
            process.receive(dict(event))

    def subscribe(self, device_id: str) -> None:
        self.subscribed[device_id] = self.subscribed.get(device_id, 0) + 1

    def unsubscribe(self, device_id: str) -> None:
        self.subscribed[device_id] -= 1


def process(bus: Broadcast) -> Downlink:
    link = Downlink(SessionLimits(1024, 10), bus, delivery_timeout=DELIVERY)
    bus.processes.append(link)
    return link


def local() -> Downlink:
    bus = LocalBus()
    link = Downlink(SessionLimits(1024, 10), bus, delivery_timeout=DELIVERY)
    bus.receiver = link.receive
    return link


async def between_polls(link: Downlink, grace: float) -> None:
    """A poll attached, then answered: the device is between two polls."""
    poll = Channel()
    link.attach("d1", poll)
    link.detach("d1", poll, linger=grace)


async def test_a_call_made_between_two_polls_answers_the_next_poll() -> None:
    link = local()
    await between_polls(link, grace=5)
    call = asyncio.create_task(link.call("d1", "setGpio", {"pin": 4}, timeout=5, oneway=False))
    # The device polls again after the delivery timeout a connected device would have had.
    await asyncio.sleep(DELIVERY * 2)
    assert not call.done()
    poll = Channel()
    link.attach("d1", poll)
    request_id, method, params = await poll.rpcs.get()
    assert (method, params) == ("setGpio", {"pin": 4})
    link.rpc_reply("d1", request_id, {"ok": True})
    assert await call == {"ok": True}
    await link.close()


async def test_a_device_that_does_not_poll_again_within_its_grace_is_not_connected() -> None:
    link = local()
    await between_polls(link, grace=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DeviceNotConnected):
        await link.call("d1", "setGpio", None, timeout=30, oneway=False)
    assert loop.time() - started < 0.3 + DELIVERY * 3  # the grace, not the call's timeout
    # Back after its grace: nothing was kept for it.
    poll = Channel()
    link.attach("d1", poll)
    await asyncio.sleep(0)
    assert poll.rpcs.empty()
    await link.close()


async def test_a_persistent_call_is_not_held_it_waits_in_its_store() -> None:
    link = local()
    await between_polls(link, grace=5)
    with pytest.raises(DeviceNotConnected):
        await link.call("d1", "setGpio", None, timeout=30, oneway=False, listeners_only=True)
    await link.close()


async def test_a_device_detached_without_grace_is_refused_at_once() -> None:
    link = local()
    poll = Channel()
    link.attach("d1", poll)
    link.detach("d1", poll)
    with pytest.raises(DeviceNotConnected):
        await link.call("d1", "setGpio", None, timeout=30, oneway=False)
    await link.close()


async def test_across_processes_the_caller_waits_for_the_holders_next_poll() -> None:
    bus = Broadcast()
    caller, holder = process(bus), process(bus)
    await between_polls(holder, grace=5)
    assert bus.subscribed["d1"] == 1  # still held on the bus during the grace
    call = asyncio.create_task(caller.call("d1", "reboot", None, timeout=5, oneway=True))
    await asyncio.sleep(DELIVERY * 2)  # the device polls again after the delivery timeout
    assert not call.done()
    poll = Channel()
    holder.attach("d1", poll)
    assert (await poll.rpcs.get())[1] == "reboot"
    assert await call is None  # one-way: done once delivered
    assert bus.subscribed["d1"] == 1  # subscribed once, through the grace and back
    holder.detach("d1", poll)
    assert bus.subscribed["d1"] == 0
    await caller.close()
    await holder.close()


async def test_the_bus_subscription_ends_with_the_grace() -> None:
    bus = Broadcast()
    holder = process(bus)
    await between_polls(holder, grace=0.05)
    assert bus.subscribed["d1"] == 1
    await asyncio.sleep(0.1)  # the grace passes with no poll
    assert bus.subscribed["d1"] == 0
    await holder.close()
