"""Persistent RPC in the core (fleetgate.core.persistent_rpc) with the in-process bus and an
in-memory store: queued until the device listens, delivered once, settled by the reply, retried,
timed out, expired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.downlink import Downlink
from fleetgate.core.local_bus import LocalBus
from fleetgate.core.errors import InvalidInput, NotFound
from fleetgate.core.persistent_rpc import PersistentRpc, PersistentRpcSettings
from fleetgate.core.rpc_calls import RpcStatus
from tests.fakes import MemoryRpcCalls, QueueChannel as Channel, SetClock

NOW = 1_700_000_000_000


@dataclass
class World:
    rpc: PersistentRpc
    downlink: Downlink
    store: MemoryRpcCalls
    clock: SetClock

    async def status(self, call_id: str) -> RpcStatus:
        return (await self.rpc.get("p1", "d1", call_id)).status


@pytest.fixture
async def world() -> AsyncIterator[World]:
    bus = LocalBus()
    downlink = Downlink(SessionLimits(1024, 10), bus, delivery_timeout=0.2)
    bus.receiver = downlink.receive
    store, clock = MemoryRpcCalls(), SetClock(NOW)
    store.add_device("p1", "d1")
    rpc = PersistentRpc(store, store, downlink, PersistentRpcSettings(ttl_ms=60_000, retries=0), clock=clock)
    downlink.on_listening = rpc.listening
    yield World(rpc, downlink, store, clock)
    await rpc.close()
    await downlink.close()


def listen(world: World) -> Channel:
    channel = Channel()
    world.downlink.attach("d1", channel)
    world.downlink.listen_rpc("d1", channel)
    return channel


async def test_a_call_waits_for_the_device_is_delivered_once_and_settled_by_its_reply(world: World) -> None:
    call = await world.rpc.submit("p1", "d1", "setGpio", {"pin": 4}, timeout=5, oneway=False)
    assert (call.status, call.expiration_time, call.retries) == (RpcStatus.QUEUED, NOW + 60_000, 0)
    # Connected but not listening for RPC (an MQTT session not subscribed yet): nothing is sent.
    idle = Channel()
    world.downlink.attach("d1", idle)
    await world.rpc.settled()
    assert await world.status(call.id) is RpcStatus.QUEUED

    channel = listen(world)
    request_id, method, params = await channel.rpcs.get()
    assert (method, params) == ("setGpio", {"pin": 4}) and idle.rpcs.empty()
    world.downlink.rpc_reply("d1", request_id, {"value": 1})
    await world.rpc.settled()
    shown = await world.rpc.get("p1", "d1", call.id)
    assert (shown.status, shown.response, shown.attempts) == (RpcStatus.SUCCESSFUL, {"value": 1}, 1)

    # The device reconnects: nothing is sent again.
    world.downlink.detach("d1", channel)
    again = listen(world)
    await world.rpc.settled()
    assert again.rpcs.empty()


async def test_a_call_for_a_device_listening_goes_out_at_once(world: World) -> None:
    channel = listen(world)
    call = await world.rpc.submit("p1", "d1", "reboot", None, timeout=5, oneway=True)
    assert (await channel.rpcs.get())[1:] == ("reboot", None)
    await world.rpc.settled()
    assert await world.status(call.id) is RpcStatus.SUCCESSFUL  # one-way: once delivered


async def test_calls_go_out_one_at_a_time_oldest_first(world: World) -> None:
    first = await world.rpc.submit("p1", "d1", "first", None, timeout=5, oneway=False)
    second = await world.rpc.submit("p1", "d1", "second", None, timeout=5, oneway=False)
    channel = listen(world)
    request_id, method, _ = await channel.rpcs.get()
    assert method == "first" and channel.rpcs.empty()
    assert await world.status(second.id) is RpcStatus.QUEUED
    world.downlink.rpc_reply("d1", request_id, "ok")
    request_id, method, _ = await channel.rpcs.get()
    assert method == "second"
    world.downlink.rpc_reply("d1", request_id, "ok too")
    await world.rpc.settled()
    assert [await world.status(c.id) for c in (first, second)] == [RpcStatus.SUCCESSFUL] * 2


async def test_an_unanswered_call_is_retried_then_times_out(world: World) -> None:
    call = await world.rpc.submit("p1", "d1", "ping", None, timeout=0.05, oneway=False, retries=1)
    channel = listen(world)
    await channel.rpcs.get()
    await channel.rpcs.get()  # the retry
    await world.rpc.settled()
    shown = await world.rpc.get("p1", "d1", call.id)
    assert (shown.status, shown.attempts) == (RpcStatus.TIMEOUT, 2)
    assert channel.rpcs.empty()


async def test_a_call_past_its_expiration_time_is_expired_and_never_sent(world: World) -> None:
    call = await world.rpc.submit("p1", "d1", "ping", None, timeout=5, oneway=False, expiration_time=NOW + 1_000)
    world.clock.now = NOW + 1_000
    assert await world.status(call.id) is RpcStatus.EXPIRED
    channel = listen(world)
    await world.rpc.settled()
    assert channel.rpcs.empty()
    listed = await world.rpc.list("p1", "d1", 10, "f" * 24, 0)
    assert [(c.id, c.status) for c in listed.items] == [(call.id, RpcStatus.EXPIRED)]


async def test_a_deleted_call_is_never_sent(world: World) -> None:
    call = await world.rpc.submit("p1", "d1", "ping", None, timeout=5, oneway=False)
    await world.rpc.delete("p1", "d1", call.id)
    with pytest.raises(NotFound):
        await world.rpc.get("p1", "d1", call.id)
    with pytest.raises(NotFound):
        await world.rpc.delete("p1", "d1", call.id)
    channel = listen(world)
    await world.rpc.settled()
    assert channel.rpcs.empty()


@pytest.mark.parametrize("fields", [
    {"expiration_time": NOW}, {"expiration_time": NOW + 11 * 365 * 86_400_000}, {"retries": -1},
    {"retries": 101}, {"timeout": 0}, {"method": ""},
])
async def test_bad_calls_are_refused_storing_nothing(world: World, fields: dict[str, Any]) -> None:
    args: dict[str, Any] = {"method": "ping", "timeout": 5, **fields}
    with pytest.raises(InvalidInput):
        await world.rpc.submit("p1", "d1", args.pop("method"), None, oneway=False, **args)
    assert world.store.calls == {}


async def test_another_projects_device_is_not_found(world: World) -> None:
    call = await world.rpc.submit("p1", "d1", "ping", None, timeout=5, oneway=False)
    for attempt in (world.rpc.submit("p2", "d1", "ping", None, timeout=5, oneway=False),
                    world.rpc.get("p2", "d1", call.id), world.rpc.list("p2", "d1", 10, "f" * 24, 0),
                    world.rpc.delete("p2", "d1", call.id)):
        with pytest.raises(NotFound):
            await attempt
    assert list(world.store.calls) == [call.id]
