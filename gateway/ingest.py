"""The ingestion pipeline: a queue bounded in rows, one batcher, a few concurrent writers.

A batch is taken when it is full, when its oldest message is ``batch_max_age`` old
or, while no other batch is being written, once that message is ``batch_min_age``
old: an idle pipeline commits almost at once, and batches grow only while commits
are already in flight (group commit). Each commit has a cost of its own (a
statement, a WAL flush), so the short wait keeps a trickle from becoming a commit
a message.

A message's receipt is told once the transaction holding its rows has committed,
which is what a stored acknowledgement waits for. When the queue is full,
``submit`` raises Overloaded (or ``wait_for_room`` blocks) rather than dropping
anything; while the database is down, batches are retried with back-off and
nothing is acknowledged (a probe ends the back-off as soon as the database is
back: gateway.recovery).

The ordering guarantee (README, docs/ingestion.md): on one MQTT or HTTP connection,
acknowledgements leave in the order the messages came, whichever batch commits
first (the front-ends hold an acknowledgement whose receipt came early). For one
device, a message sent after the previous one was acknowledged is committed after
it. Messages of one device in flight together may be in batches written at once,
and commit in either order: each (device, key, ts) is a row of its own, so that
changes nothing unless a device sends one timestamp twice, and then either value
may stay. Keeping a device's messages out of concurrent batches (tried, to keep
them in arrival order) serialised the writers whenever the queue held more
messages than devices: with 1,000 devices the first batch took them all, the next waited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fleetgate.core import metrics
from fleetgate.core.errors import Overloaded, ShuttingDown, Unavailable
from fleetgate.core.ports import IngestWriter
from fleetgate.core.recovery import Recovery
from fleetgate.core.retry import Backoff, Outage
from fleetgate.core.telemetry_model import AttributeMessage, TelemetryMessage

log = logging.getLogger(__name__)

Message = TelemetryMessage | AttributeMessage


class Receipt(Protocol):
    """What a stored acknowledgement waits on: told once, when the message's transaction
    has committed or when it never will. Only the first call counts."""

    def stored(self) -> None: ...

    def failed(self, error: BaseException) -> None: ...


class Countdown:
    """One receipt for several messages: stored once every one is, failed at the first failure."""

    __slots__ = ("_left", "_receipt")

    def __init__(self, receipt: Receipt, count: int) -> None:
        self._receipt = receipt
        self._left = count

    def stored(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._receipt.stored()

    def failed(self, error: BaseException) -> None:
        if self._left > 0:
            self._left = 0
            self._receipt.failed(error)


class FutureReceipt:
    """A receipt that completes a future, for front-ends that await their acknowledgement."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def stored(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def failed(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


_Entry = tuple[Message, int, Receipt | None]
_UNEXPECTED_ERROR_TRIES = 3
_RETRY_FIRST_DELAY = 0.05
# Below this many rows a batch is not split further to feed another idle writer.
_MIN_SHARE = 256


@dataclass(frozen=True, slots=True)
class IngestSettings:
    capacity_rows: int = 200_000
    batch_max_rows: int = 5_000
    batch_max_age: float = 0.01
    batch_min_age: float = 0.001  # with no other batch being written; at most batch_max_age
    writers: int = 2
    retry_max_delay: float = 5.0
    retry_after: float = 1.0


class IngestPipeline:
    def __init__(self, writer: IngestWriter, settings: IngestSettings, recovery: Recovery | None = None) -> None:
        self._writer = writer
        # Waits out the back-off between attempts, and ends it when the database is back.
        self._recovery = recovery or Recovery()
        self._settings = settings
        self._capacity = settings.capacity_rows
        # (message, its row count, the receipt its acknowledgement waits on)
        self._queue: deque[_Entry] = deque()
        self._queued_rows = 0
        self._inflight_rows = 0
        self._nonempty = asyncio.Event()
        # Wakes the batcher while it gathers: the batch is full, the pipeline is closing, or the
        # writes in flight are done. It re-reads what woke it, so a wake it did not need is harmless.
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._slots = asyncio.Semaphore(settings.writers)
        self._busy_writers = 0
        self._oldest_at = 0.0  # loop time the oldest queued message arrived
        self._writes: set[asyncio.Task[None]] = set()
        self._batcher: asyncio.Task[None] | None = None
        self._closing = False
        # Shared by the writers: an outage is one warning, whichever writer meets it first.
        self._outage = Outage(log)

    @property
    def depth_rows(self) -> int:
        return self._queued_rows + self._inflight_rows

    @property
    def saturated(self) -> bool:
        return self._queued_rows + self._inflight_rows >= self._capacity

    def start(self) -> None:
        # Read at scrape time: setting a gauge takes a lock, and submit is the hot path.
        metrics.sample(metrics.QUEUE_DEPTH, lambda: self.depth_rows)
        self._batcher = asyncio.create_task(self._run(), name="ingest-batcher")

    def submit(
        self, message: Message, *, wait_stored: bool = False, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        """Queue a message. ``receipt`` is told when it is stored; or, with ``wait_stored``,
        the future returned completes then. Receipts are called directly when a batch
        commits, with no event-loop handle per message: the way for high rates.

        Raises Overloaded when the queue holds no room for it and Unavailable
        once the pipeline is shutting down.
        """
        rows = message.rows
        self._admit(rows)
        future = None
        if receipt is None and wait_stored:
            future = asyncio.get_running_loop().create_future()
            receipt = FutureReceipt(future)
        if not rows:
            if receipt is not None:
                receipt.stored()
            return future
        self._enqueue(message, rows, receipt)
        return future

    def submit_all(
        self, messages: Sequence[Message], *, wait_stored: bool = False, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        """Queue several messages as one (a gateway's message for its sub-devices): all of them or,
        when the queue lacks room for all, none; one receipt told once every one is stored."""
        counted = [(message, message.rows) for message in messages]
        rows = sum(count for _, count in counted)
        self._admit(rows)
        future = None
        if receipt is None and wait_stored:
            future = asyncio.get_running_loop().create_future()
            receipt = FutureReceipt(future)
        stored = [(message, count) for message, count in counted if count]
        if not stored:
            if receipt is not None:
                receipt.stored()
            return future
        shared = Countdown(receipt, len(stored)) if receipt is not None and len(stored) > 1 else receipt
        for message, count in stored:
            self._enqueue(message, count, shared)
        return future

    def _admit(self, rows: int) -> None:
        if self._closing:
            raise ShuttingDown("The gateway is shutting down")
        depth = self._queued_rows + self._inflight_rows
        if rows and depth + rows > self._capacity and depth:
            metrics.INGEST_REJECTED.inc()
            raise Overloaded("The ingest queue is full", retry_after=self._settings.retry_after)

    def _enqueue(self, message: Message, rows: int, receipt: Receipt | None) -> None:
        if not self._queue:
            self._oldest_at = asyncio.get_running_loop().time()
            self._nonempty.set()
        self._queue.append((message, rows, receipt))
        self._queued_rows += rows
        if self._queued_rows >= self._settings.batch_max_rows:
            self._wake.set()
        if self._queued_rows + self._inflight_rows >= self._capacity:
            self._room.clear()

    async def wait_for_room(self) -> None:
        """Wait until the queue has room again: how a streaming front-end pushes back."""
        await self._room.wait()

    async def stop(self, timeout: float) -> None:
        """Stop accepting, write what is queued within ``timeout``, then cancel the rest."""
        self._closing = True
        self._nonempty.set()
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                if self._batcher is not None:
                    await asyncio.shield(self._batcher)
        except TimeoutError:
            log.error("ingest drain timed out with %d rows unwritten; they were not acknowledged", self.depth_rows)
        finally:
            tasks = [t for t in (self._batcher, *self._writes) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            unstored = Unavailable("The gateway shut down before the message was stored")
            for _, _, receipt in self._queue:
                if receipt is not None:
                    receipt.failed(unstored)
            self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._nonempty.wait()
            if not self._queue:
                if self._closing:
                    break
                self._nonempty.clear()
                continue
            await self._slots.acquire()
            self._busy_writers += 1
            await self._gather()
            # How long the batch waited: its age, and the wait for a writer (the tail's first stage).
            metrics.BATCH_WAIT_SECONDS.observe(max(asyncio.get_running_loop().time() - self._oldest_at, 0.0))
            batch, rows = self._take(self._share())
            task = asyncio.create_task(self._write(batch, rows), name="ingest-write")
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)
        await asyncio.gather(*self._writes)

    async def _gather(self) -> None:
        """Wait until the queued messages should be taken (the module's docstring says when)."""
        settings = self._settings
        loop = asyncio.get_running_loop()
        while self._queued_rows < settings.batch_max_rows and not self._closing:
            behind_others = self._busy_writers > 1  # this batch's own slot is counted
            age = settings.batch_max_age if behind_others else min(settings.batch_min_age, settings.batch_max_age)
            deadline = self._oldest_at + age
            if loop.time() >= deadline:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._wake.wait()
            except TimeoutError:
                return

    def _share(self) -> int:
        """Rows for this batch: the queue split across the idle writers, so that a burst
        is written by all of them at once rather than by one while the others wait."""
        idle = self._settings.writers - self._busy_writers + 1
        share = max(-(-self._queued_rows // idle), _MIN_SHARE)
        return min(share, self._settings.batch_max_rows)

    def _take(self, limit: int) -> tuple[list[_Entry], int]:
        queue = self._queue
        batch: list[_Entry] = []
        rows = 0
        while queue and rows < limit:
            entry = queue.popleft()
            batch.append(entry)
            rows += entry[1]
        self._queued_rows -= rows
        self._inflight_rows += rows
        if not queue and not self._closing:
            self._nonempty.clear()
        return batch, rows

    async def _write(self, batch: list[_Entry], rows: int) -> None:
        started = time.perf_counter()
        try:
            await self._store(batch)
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
            metrics.BATCH_ROWS.observe(rows)
        except BaseException:
            # Cancelled at the shutdown deadline: these rows may not be stored, say so.
            unstored = Unavailable("The gateway shut down before the message was stored")
            for _, _, receipt in batch:
                if receipt is not None:
                    receipt.failed(unstored)
            raise
        finally:
            self._inflight_rows -= rows
            if self._queued_rows + self._inflight_rows < self._capacity:
                self._room.set()
            self._busy_writers -= 1
            self._slots.release()
            if self._busy_writers == 1:  # only a gathering batch's own slot, if any, is left
                self._wake.set()

    async def _store(self, batch: list[_Entry]) -> None:
        """Write ``batch``, retrying through database outages. Any other error splits it and
        writes the halves apart, so that one bad message is refused alone, not its batch."""
        telemetry: list[TelemetryMessage] = []
        attributes: list[AttributeMessage] = []
        rows = 0
        for message, count, _ in batch:
            rows += count
            if type(message) is TelemetryMessage:
                telemetry.append(message)
            else:
                attributes.append(message)
        maximum = self._settings.retry_max_delay
        backoff = Backoff(min(_RETRY_FIRST_DELAY, maximum), maximum, jitter=0.2)
        failures = 0
        while True:
            try:
                await self._writer.write(telemetry, attributes)
                break
            except Unavailable as exc:
                metrics.DB_ERRORS.inc()
                self._outage.failed("telemetry writes retried with back-off (at most %.1f s apart), nothing "
                                    "acknowledged meanwhile: %s", maximum, exc)
                if await self._recovery.wait(backoff.next()):
                    backoff.reset()
                continue
            except Exception as exc:
                metrics.DB_ERRORS.inc()
                if len(batch) > 1:
                    middle = len(batch) // 2
                    await self._store(batch[:middle])
                    await self._store(batch[middle:])
                    return
                failures += 1
                if failures >= _UNEXPECTED_ERROR_TRIES:
                    log.exception("a message failed to store %d times; not acknowledged", failures)
                    receipt = batch[0][2]
                    if receipt is not None:
                        receipt.failed(exc)
                    return
                log.warning("a message failed to store (try %d of %d), retried with back-off: %r", failures,
                            _UNEXPECTED_ERROR_TRIES, exc)
            await asyncio.sleep(backoff.next())
        self._outage.recovered("telemetry writes resumed")
        metrics.ROWS_STORED.inc(rows)
        for _, _, receipt in batch:
            if receipt is not None:
                receipt.stored()
