"""NATS_FORWARDING to Debian's nats-server with JetStream, started by the test: a consumer of the
stream receives every stored point, through a restart of nats-server mid-run; Nats-Msg-Id lets
JetStream drop a repeat."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from tests.forwarding_fleet import Fleet, stored_points
from tests.forwarding_support import own_database, points
from tests.nats_support import nats_cluster, requires_nats_server
from tests.support import gateway_settings, new_tenant, running_gateway

nats = pytest.importorskip("nats")
pytestmark = requires_nats_server


async def read_stream(url: str, stream: str, until: set) -> tuple[Counter, int]:
    """The stream's messages, read by a pull consumer of the test's own until their points cover
    ``until`` (each fetch waits on the server): the points, counted, and how many messages."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        subscription = await js.pull_subscribe("fleet.>", durable=None, stream=stream)
        notes: list = []
        async with asyncio.timeout(60):
            while not until <= set(points(notes)):
                try:
                    batch = await subscription.fetch(500, timeout=5)
                except nats.errors.TimeoutError:
                    continue
                for message in batch:
                    notes.append(orjson.loads(message.data))
                    await message.ack()
        info = await js.stream_info(stream)
        return points(notes), info.state.messages
    finally:
        await client.close()


class Observer:
    """A plain NATS subscriber on the subject: counts what the gateway publishes, as it comes."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def received(self, _message) -> None:
        async with self._changed:
            self.count += 1
            self._changed.notify_all()

    async def wait(self, count: int, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.count >= count)


async def test_a_jetstream_consumer_receives_every_point_through_a_server_restart(database_url, tmp_path) -> None:
    async with nats_cluster(tmp_path / "nats") as (node,):
        client = await nats.connect(node.url)
        await client.jetstream().add_stream(name="FLEET", subjects=["fleet.>"])
        await client.close()
        settings = gateway_settings(str(tmp_path / "gw"), forwarding_retry_max_seconds=1.0,
                                    forwarding_max_attempts=1000)
        async with own_database(database_url) as (url, _), running_gateway(url, settings) as gw:
            tenant = await new_tenant(gw.services)
            rules = gw._forwarding.rules  # noqa: SLF001
            rule = await rules.create_rule(tenant.project_id, name="nats", description=None,
                                           resource="device.property", event="report", active=True)
            await rules.create_action(tenant.project_id, rule.id, "NATS_FORWARDING",
                                      {"servers": [node.url], "subject": "fleet.telemetry"})
            fleet = Fleet({listener.name: listener.url for listener in gw.listeners})
            await fleet.provision(gw.services.pool, tenant, ["mqtt"] * 4 + ["http"] * 4 + ["coap"] * 4)
            fleet.start()
            observer = Observer()
            watcher = await nats.connect(node.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            await watcher.subscribe("fleet.>", cb=observer.received)
            try:
                await observer.wait(100)
                await node.stop()
                await fleet.wait_acked(fleet.acked + 100)  # the devices go on while NATS is down
                await node.start()
                await observer.wait(observer.count + 100)  # published again once NATS is back
            finally:
                await watcher.close()
            await fleet.stop()
            stored = await stored_points(gw.services.pool, [d.id for d in fleet.devices])
            received, messages = await read_stream(node.url, "FLEET", stored)
            assert set(received) == stored and len(stored) == fleet.acked
            # JetStream dropped what was published twice under one Nats-Msg-Id.
            assert messages == sum(received.values()) == len(stored)
