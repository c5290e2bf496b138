"""The live feed: committed telemetry and client attributes, to WebSocket subscribers (docs/queries.md).

Where updates come from: ``CommittedFeed`` wraps the ingest writer. A batch's updates leave only
after its write returned, that is after its transaction committed, and batches leave in the order
the batcher formed them (a batch that commits early waits for the ones before it), so a device's
points leave in the order it sent them. Handing them on is a few dictionary lookups; nothing waits
for a subscriber, so ingestion never slows for one.

How they travel: through a ``LiveBus`` (PostgreSQL NOTIFY), to every gateway process on the
database, this one included, and only for devices someone subscribed to. Each process announces
the devices its subscribers watch (``LiveHub.watch``), and renews the announcement while they do;
an announcement lapses after ``INTEREST_SECONDS`` (a process that died stops renewing). A process
that starts asks the others to announce theirs again.

Where they go: each WebSocket connection has a ``Outbox`` bounded in updates. When a slow
consumer lets it fill, the oldest updates are dropped and counted (``dropped``, and the
gateway_live_updates_dropped_total metric): the documented overflow policy.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from fleetgate.core import metrics
from fleetgate.core.ports import IngestWriter, LiveBus
from fleetgate.core.tasks import OwnedTasks
from fleetgate.core.telemetry_model import AttributeMessage, KeyValue, TelemetryMessage, ValueType

log = logging.getLogger(__name__)

# How long a process's announcement that it watches a device holds; renewed every third of it.
INTEREST_SECONDS = 60.0

Point = tuple[str, int, str]  # key, ts, the value as ThingsBoard's WebSocket API writes it (text)


class Feed(enum.StrEnum):
    TIMESERIES = "ts"
    CLIENT_ATTRIBUTES = "CLIENT_SCOPE"
    # Device status as ThingsBoard shows it (fleetgate.core.live_status).
    SERVER_ATTRIBUTES = "SERVER_SCOPE"


def as_text(kv: KeyValue) -> str:
    """ThingsBoard's getValueAsString: the WebSocket API sends every value as text."""
    match kv.type:
        case ValueType.BOOLEAN:
            return "true" if kv.value else "false"
        case ValueType.STRING:
            return kv.value  # type: ignore[no-any-return]
        case ValueType.LONG | ValueType.DOUBLE:
            return str(kv.value)
        case _:
            # The codec keeps a JSON value as its text, which is what the writer stores.
            return kv.value if isinstance(kv.value, str) else orjson.dumps(kv.value).decode()


def text_of(value: object) -> str:
    """A stored value (as the stores return it) as ThingsBoard's WebSocket API writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


class Outbox:
    """One connection's updates waiting to be sent, at most ``capacity``; the oldest dropped
    past that."""

    def __init__(self, capacity: int) -> None:
        self._items: collections.deque[tuple[float, dict[str, Any]]] = collections.deque()
        self._capacity = capacity
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def offer(self, update: dict[str, Any], committed_at: float) -> None:
        """``committed_at``: when the update's batch committed (time.time()); 0 for an answer."""
        if self.closed:
            return
        if len(self._items) >= self._capacity:
            self._items.popleft()
            self.dropped += 1
            metrics.LIVE_DROPPED.inc()
        self._items.append((committed_at, update))
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self) -> list[tuple[float, dict[str, Any]]]:
        """Everything waiting (once there is something); empty once closed."""
        while not self._items and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        items = list(self._items)
        self._items.clear()
        return items


@dataclass(slots=True, eq=False)
class Subscription:
    """``cmd_id`` on one connection (its outbox): ThingsBoard's subscriptionId. Until its first
    answer (the current values) is out, its updates wait in ``pending``."""

    outbox: Outbox
    cmd_id: int
    device_id: str
    feed: Feed
    keys: frozenset[str] | None  # None: every key
    pending: list[tuple[dict[str, list[list[Any]]], float]] | None = field(default_factory=list)

    def answer(self, data: dict[str, list[list[Any]]]) -> None:
        """The subscription's first answer, then the updates that came meanwhile and are newer."""
        self.outbox.offer(self._update(data), 0.0)
        waiting, self.pending = self.pending or [], None
        for update, committed_at in waiting:
            newer = {key: [p for p in points if key not in data or p[0] > data[key][-1][0]]
                     for key, points in update.items()}
            newer = {key: points for key, points in newer.items() if points}
            if newer:
                self.outbox.offer(self._update(newer), committed_at)

    def offer(self, data: dict[str, list[list[Any]]], committed_at: float) -> None:
        if self.pending is not None:
            self.pending.append((data, committed_at))
        else:
            self.outbox.offer(self._update(data), committed_at)

    def _update(self, data: dict[str, list[list[Any]]]) -> dict[str, Any]:
        return {"subscriptionId": self.cmd_id, "errorCode": 0, "errorMsg": None, "data": data}


class LiveHub:
    """This process's subscriptions, and the devices watched by any process."""

    def __init__(self, bus: LiveBus, *, process_id: str | None = None) -> None:
        self._bus = bus
        self._process = process_id or f"{os.getpid()}-{time.monotonic_ns()}"
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._remote: dict[str, float] = {}  # device -> monotonic time its announcement lapses
        self._tasks = OwnedTasks()

    def start(self) -> None:
        self._bus.receiver = self.receive
        self._bus.send({"t": "hello", "p": self._process})
        self._tasks.spawn(self._renew())

    async def close(self) -> None:
        await self._tasks.finish()

    # -- subscriptions ---------------------------------------------------------------------------

    def add(self, subscription: Subscription) -> None:
        first = subscription.device_id not in self._subscriptions
        self._subscriptions.setdefault(subscription.device_id, []).append(subscription)
        if first:
            self._announce([subscription.device_id])

    async def announced(self) -> None:
        """Until the other processes have been told of the devices watched so far. A point that
        another process commits before it hears of a new subscription is not sent to it: the
        subscription's first answer (the latest values, read after this) holds it instead."""
        await self._bus.flush()

    def remove(self, outbox: Outbox, cmd_id: int | None = None) -> None:
        """The subscription ``cmd_id`` of a connection, or all of its subscriptions."""
        for device, subscriptions in list(self._subscriptions.items()):
            kept = [s for s in subscriptions if not (s.outbox is outbox and cmd_id in (None, s.cmd_id))]
            if kept:
                self._subscriptions[device] = kept
            else:
                del self._subscriptions[device]

    def watched(self, device_id: str) -> bool:
        if device_id in self._subscriptions:
            return True
        until = self._remote.get(device_id)
        return until is not None and until > time.monotonic()

    @property
    def watching(self) -> bool:
        """Whether any process watches any device: when not, committed batches cost nothing."""
        return bool(self._subscriptions or self._remote)

    # -- the bus -----------------------------------------------------------------------------------

    @staticmethod
    def now() -> float:
        """The time updates are stamped with (time.time()), to measure their delivery."""
        return time.time()

    def publish(self, updates: list[tuple[str, str, list[Point]]], committed_at: float) -> None:
        """Updates of one committed batch: (device, feed, points)."""
        self._bus.send({"t": "u", "c": committed_at, "x": updates})

    def receive(self, event: dict[str, Any]) -> None:
        kind = event.get("t")
        if kind == "u":
            committed_at = float(event.get("c", time.time()))
            for device, feed, points in event.get("x", ()):
                self._deliver(device, feed, points, committed_at)
        elif kind == "i" and event.get("p") != self._process:
            until = time.monotonic() + INTEREST_SECONDS
            for device in event.get("d", ()):
                self._remote[device] = until
        elif kind == "hello" and event.get("p") != self._process and self._subscriptions:
            self._announce(list(self._subscriptions))

    def _deliver(self, device: str, feed: str, points: Sequence[Sequence[Any]], committed_at: float) -> None:
        for subscription in self._subscriptions.get(device, ()):
            if subscription.feed != feed:
                continue
            data: dict[str, list[list[Any]]] = {}
            for key, ts, value in points:
                if subscription.keys is None or key in subscription.keys:
                    data.setdefault(key, []).append([ts, value])
            if data:
                subscription.offer(data, committed_at)

    def _announce(self, devices: list[str]) -> None:
        for start in range(0, len(devices), 100):
            self._bus.send({"t": "i", "p": self._process, "d": devices[start:start + 100]})

    async def _renew(self) -> None:
        """Renew this process's announcements, and forget lapsed ones of others."""
        while True:
            await asyncio.sleep(INTEREST_SECONDS / 3)
            now = time.monotonic()
            self._remote = {d: until for d, until in self._remote.items() if until > now}
            if self._subscriptions:
                self._announce(list(self._subscriptions))


class CommittedFeed:
    """The ingest writer, handing each committed batch's updates to the hub in batch order."""

    def __init__(self, writer: IngestWriter, hub: LiveHub) -> None:
        self._writer = writer
        self._hub = hub
        self._next = 0  # the sequence number of the next batch to write
        self._released = 0  # batches before this one have left
        self._done: dict[int, list[tuple[str, str, list[Point]]] | None] = {}

    async def write(self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]) -> None:
        seq = self._next
        self._next += 1
        updates = None
        try:
            await self._writer.write(telemetry, attributes)
            if self._hub.watching:
                updates = self._updates(telemetry, attributes)
        finally:
            # A failed write leaves nothing (its retry is another batch), but must not hold
            # back the batches after it.
            self._done[seq] = updates
            self._release()

    def _release(self) -> None:
        committed_at = time.time()
        while self._released in self._done:
            updates = self._done.pop(self._released)
            self._released += 1
            if updates:
                self._hub.publish(updates, committed_at)

    def _updates(self, telemetry: Iterable[TelemetryMessage],
                 attributes: Iterable[AttributeMessage]) -> list[tuple[str, str, list[Point]]]:
        watched = self._hub.watched
        updates: list[tuple[str, str, list[Point]]] = []
        for message in telemetry:
            if watched(message.device_id):
                updates.append((message.device_id, Feed.TIMESERIES.value, [
                    (kv.key, reading.ts, as_text(kv)) for reading in message.readings for kv in reading.values]))
        for attribute in attributes:
            if attribute.scope.value == Feed.CLIENT_ATTRIBUTES.value and watched(attribute.device_id):
                updates.append((attribute.device_id, Feed.CLIENT_ATTRIBUTES.value, [
                    (kv.key, attribute.ts, as_text(kv)) for kv in attribute.values]))
        return updates
