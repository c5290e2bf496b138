"""The NATS downlink bus with real nats-server nodes: per-device routing, request-reply for
receipts and replies, a device moving between processes, and NATS going away."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from fleetgate.core.device_channel import SessionLimits
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import DeviceNotConnected, Unavailable
from fleetgate.storage.nats_bus import NatsDownlinkBus, NatsSettings, device_subject
from tests.nats_support import NatsNode, nats_cluster, requires_nats_server
from tests.support import free_port

pytestmark = requires_nats_server


class Channel:
    def __init__(self) -> None:
        self.attributes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.rpcs: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()

    def push_attributes(self, update: dict[str, Any]) -> None:
        self.attributes.put_nowait(update)

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        self.rpcs.put_nowait((request_id, method, params))


class Process:
    """One gateway process's downlink over NATS, counting the events it hears."""

    def __init__(self, servers: list[str]) -> None:
        self.bus = NatsDownlinkBus(NatsSettings(tuple(servers), reconnect_wait=0.1))
        self.downlink = Downlink(SessionLimits(1024, 10), self.bus, delivery_timeout=1.0)
        self.heard: list[dict[str, Any]] = []

        def receive(event: dict[str, Any]) -> None:
            self.heard.append(event)
            self.downlink.receive(event)

        self.bus.receiver = receive

    async def attached(self, device_id: str, channel: Channel) -> None:
        """Attach, and wait until the subscription has reached the server."""
        self.downlink.attach(device_id, channel)
        await self.synced()

    async def synced(self) -> None:
        async with asyncio.timeout(20):
            await self.bus.flush()

    async def close(self) -> None:
        await self.downlink.close()
        await self.bus.stop()


@pytest.fixture
async def cluster(tmp_path):
    async with nats_cluster(tmp_path, 3, jetstream=False) as nodes:
        yield nodes


@pytest.fixture
async def processes(cluster):
    # Each process on its own node: the messages cross the cluster's routes.
    started = [Process([node.url for node in cluster[i:] + cluster[:i]]) for i in range(3)]
    for process in started:
        await process.bus.start()
    yield started
    for process in started:
        await process.close()


async def answer(channel: Channel, process: Process, device_id: str, reply: Any) -> tuple[str, Any]:
    request_id, method, params = await channel.rpcs.get()
    process.downlink.rpc_reply(device_id, request_id, reply)
    return method, params


async def test_a_call_reaches_the_process_holding_the_device_and_no_other(processes) -> None:
    a, b, c = processes
    channel = Channel()
    await b.attached("dev1", channel)
    call = asyncio.create_task(a.downlink.call("dev1", "echo", {"n": 1}, timeout=5, oneway=False))
    assert await answer(channel, b, "dev1", {"n": 2}) == ("echo", {"n": 1})
    assert await call == {"n": 2}
    await a.downlink.attributes_changed("dev1", [], ["gone"])
    assert await channel.attributes.get() == {"deleted": ["gone"]}
    await c.synced()
    assert c.heard == []  # neither the request, the receipt, the reply nor the update
    assert [e["t"] for e in b.heard] == ["rpc", "attributes"]
    assert [e["t"] for e in a.heard] == ["delivered", "reply"]
    assert all(e["a"] == a.bus.address for e in a.heard)


async def test_a_device_reconnecting_elsewhere_is_reached_there_at_once(processes) -> None:
    a, b, c = processes
    first, second = Channel(), Channel()
    await b.attached("dev2", first)
    b.downlink.detach("dev2", first)
    await c.attached("dev2", second)
    await b.synced()
    call = asyncio.create_task(a.downlink.call("dev2", "where", None, timeout=5, oneway=False))
    assert await answer(second, c, "dev2", "c") == ("where", None)
    assert await call == "c"
    assert first.rpcs.empty() and [e["t"] for e in b.heard] == []


async def test_a_device_held_nowhere_is_not_connected(processes) -> None:
    a, _, _ = processes
    with pytest.raises(DeviceNotConnected):
        await a.downlink.call("nobody", "ping", None, timeout=5, oneway=True)


async def test_ids_that_are_not_subject_tokens_are_spelled_in_hex(processes) -> None:
    a, b, _ = processes
    assert device_subject("fg", "prod_node.1 *>") == "fg.dx." + "prod_node.1 *>".encode().hex()
    channel = Channel()
    await b.attached("prod_node.1 *>", channel)
    assert await a.downlink.call("prod_node.1 *>", "x", None, timeout=5, oneway=True) is None


async def test_one_node_lost_is_invisible_and_all_lost_is_503_fast_then_recovery(cluster, processes) -> None:
    a, b, _ = processes
    channel = Channel()
    await b.attached("dev3", channel)
    await cluster[1].stop()  # b's node (and none of a's connections)

    async def round_trip(n: int) -> Any:
        call = asyncio.create_task(a.downlink.call("dev3", "n", n, timeout=5, oneway=False))
        await answer(channel, b, "dev3", n)
        return await call

    assert [await round_trip(n) for n in range(5)] == list(range(5))
    await asyncio.gather(cluster[0].stop(), cluster[2].stop())
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await a.downlink.call("dev3", "n", 0, timeout=5, oneway=False)
    with pytest.raises(Unavailable):
        await a.downlink.attributes_changed("dev3", [], ["k"])
    assert time.monotonic() - started < 3
    await asyncio.gather(*(node.start() for node in cluster))
    await b.synced()
    assert await round_trip(7) == 7


async def test_a_bus_started_before_nats_connects_when_it_comes(tmp_path) -> None:
    node = NatsNode("late", tmp_path, free_port(), free_port(), [], jetstream=False)
    process = Process([node.url])
    await process.bus.start()  # no server yet: the gateway starts anyway
    channel = Channel()
    process.downlink.attach("dev4", channel)
    try:
        with pytest.raises(Unavailable):
            await process.downlink.attributes_changed("dev4", [], ["k"])
        await node.start()
        await process.synced()
        assert await process.downlink.call("dev4", "m", None, timeout=5, oneway=True) is None
    finally:
        await process.close()
        await node.stop()
