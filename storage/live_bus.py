"""The live feed's bus (fleetgate.core.live) over PostgreSQL NOTIFY: every process on the
database hears every event, in the order it was sent.

``send`` only queues: one task sends what has queued since its last round trip, as the
notifications of one statement, which PostgreSQL delivers in that order. A NOTIFY payload holds
under 8,000 bytes, so a batch's updates are cut into events that fit (by device, then by points);
a single data point too large for one is left out of the live feed, and counted. The feed is
not durable: what is queued while PostgreSQL cannot be reached is dropped, and counted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import orjson

from fleetgate.core import metrics
from fleetgate.core.retry import Outage
from fleetgate.storage.listening import ListeningConnection

log = logging.getLogger(__name__)

CHANNEL = "gateway_live"
_PAYLOAD = 7_500  # bytes of one notification's payload, under NOTIFY's 8,000
_QUEUED = 100_000  # events waiting to be sent, at most


class PgLiveBus:
    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.receiver: Callable[[dict[str, Any]], None] | None = None
        self._listening = ListeningConnection(url, CHANNEL, self._notified)
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage(log)
        self._queued_total = 0  # events ever queued
        self._sent_total = 0  # events ever sent (or dropped)
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    async def start(self) -> None:
        await self._listening.start()
        self._task = asyncio.create_task(self._send_queued(), name="live-bus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sent_total = self._queued_total
        self._wake()
        await self._listening.stop()

    def send(self, event: dict[str, Any]) -> None:
        if len(self._queue) >= _QUEUED:
            self._queue.popleft()
            self._sent_total += 1
            metrics.LIVE_DROPPED.inc()
        self._queue.append(event)
        self._queued_total += 1
        self._ready.set()

    async def flush(self) -> None:
        """Until every event queued so far has been sent (or dropped)."""
        if self._sent_total >= self._queued_total:
            return
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((self._queued_total, done))
        await done

    async def _send_queued(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            events, self._queue = self._queue, collections.deque()
            payloads = [p for event in events for p in _payloads(event)]
            # On the listening connection while it is up: the pool's connections may all be busy
            # writing batches, and a live update should not wait for one.
            conn = self._listening.connection or self._pool
            try:
                await conn.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, payloads)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                metrics.LIVE_DROPPED.inc(len(events))
                self._outage.failed("live-feed updates dropped, PostgreSQL is unreachable: %s", exc)
            else:
                self._outage.recovered("live-feed updates flow again")
            self._sent_total += len(events)
            self._wake()

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for target, done in waiting:
            if self._sent_total >= target:
                if not done.done():
                    done.set_result(None)
            else:
                self._waiting.append((target, done))

    def _notified(self, payload: str) -> None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("a malformed live-feed notification was dropped")
            return
        if isinstance(event, dict) and self.receiver is not None:
            self.receiver(event)


def _payloads(event: dict[str, Any]) -> Iterator[str]:
    """The event as payloads that fit, an update event cut by device and then by points."""
    text = orjson.dumps(event).decode()
    if len(text.encode()) <= _PAYLOAD:
        yield text
        return
    updates = event.get("x")
    if event.get("t") != "u" or not isinstance(updates, list):
        metrics.LIVE_DROPPED.inc()
        return
    if len(updates) > 1:
        for update in updates:
            yield from _payloads({**event, "x": [update]})
        return
    device, feed, points = updates[0]
    if len(points) <= 1:
        metrics.LIVE_DROPPED.inc()
        log.warning("a live-feed data point of device %s too large for a notification was left out", device)
        return
    middle = len(points) // 2
    yield from _payloads({**event, "x": [[device, feed, points[:middle]]]})
    yield from _payloads({**event, "x": [[device, feed, points[middle:]]]})
