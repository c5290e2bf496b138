"""The ingest pipeline's own logic, against an in-memory writer (the storage port)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fleetgate.core.errors import Overloaded, Unavailable
from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.telemetry_model import KeyValue, Reading, TelemetryMessage, ValueType
from tests.fakes import MemoryWriter


def message(device: str, rows: int = 1, ts: int = 1_700_000_000_000) -> TelemetryMessage:
    values = tuple(KeyValue(f"k{i}", ValueType.LONG, i) for i in range(rows))
    return TelemetryMessage(device, (Reading(ts, values),))


@pytest.fixture
async def writer():
    return MemoryWriter()


def pipeline_for(writer: MemoryWriter, **settings) -> IngestPipeline:
    pipeline = IngestPipeline(writer, IngestSettings(**{"batch_max_age": 0.001, **settings}))
    pipeline.start()
    return pipeline


async def test_acknowledged_only_after_the_write(writer) -> None:
    writer.open.clear()
    pipeline = pipeline_for(writer)
    future = pipeline.submit(message("d1", 3), wait_stored=True)
    await asyncio.sleep(0)  # let the batcher hand the batch to a writer
    assert not future.done()
    writer.open.set()
    await future
    assert writer.rows == 3
    await pipeline.stop(1)


async def test_batches_are_bounded_by_rows(writer) -> None:
    writer.open.clear()
    pipeline = pipeline_for(writer, batch_max_rows=10, writers=1)
    futures = [pipeline.submit(message(f"d{i}", 3), wait_stored=True) for i in range(20)]
    writer.open.set()
    await asyncio.gather(*futures)
    assert writer.rows == 60
    # A batch closes once it reaches 10 rows: at most one 3-row message over.
    assert all(sum(m.rows for m in batch) <= 12 for batch in writer.batches)
    assert len(writer.batches) >= 5
    await pipeline.stop(1)


async def test_full_queue_pushes_back_and_frees_room_after_commit(writer) -> None:
    writer.open.clear()
    pipeline = pipeline_for(writer, capacity_rows=10, writers=1)
    stored = [pipeline.submit(message(f"d{i}", 5), wait_stored=True) for i in range(2)]
    with pytest.raises(Overloaded) as refused:
        pipeline.submit(message("d9", 1), wait_stored=True)
    assert refused.value.retry_after >= 1
    room = asyncio.ensure_future(pipeline.wait_for_room())
    await asyncio.sleep(0)
    assert not room.done()
    writer.open.set()
    await asyncio.gather(*stored)
    await room
    await pipeline.submit(message("d9", 1), wait_stored=True)
    assert writer.rows == 11
    await pipeline.stop(1)


async def test_a_message_larger_than_the_queue_still_passes_alone(writer) -> None:
    pipeline = pipeline_for(writer, capacity_rows=4)
    await pipeline.submit(message("big", 9), wait_stored=True)
    assert writer.rows == 9
    await pipeline.stop(1)


async def test_empty_messages_are_acknowledged_at_once(writer) -> None:
    pipeline = pipeline_for(writer)
    future = pipeline.submit(TelemetryMessage("d", ()), wait_stored=True)
    assert future.done()
    assert writer.calls == 0
    await pipeline.stop(1)


async def test_database_outage_is_retried_and_nothing_acknowledged_meanwhile(writer) -> None:
    writer.failures = [Unavailable("down"), Unavailable("still down")]
    pipeline = pipeline_for(writer, retry_max_delay=0.05)
    future = pipeline.submit(message("d1", 2), wait_stored=True)
    await future
    assert writer.calls == 3
    assert writer.rows == 2
    await pipeline.stop(1)


async def test_a_database_outage_logs_one_warning_and_a_summary(writer, caplog) -> None:
    writer.failures = [Unavailable("down")] * 4
    pipeline = pipeline_for(writer, retry_max_delay=0.01)
    with caplog.at_level(logging.DEBUG, logger="fleetgate.core.ingest"):
        await pipeline.submit(message("d1", 2), wait_stored=True)
    await pipeline.stop(1)
    assert [r.levelno for r in caplog.records] == [logging.WARNING, *[logging.DEBUG] * 3, logging.INFO]
    assert caplog.records[-1].getMessage().startswith("telemetry writes resumed after")
    assert not any(r.exc_info for r in caplog.records)


async def test_a_batch_failing_for_another_reason_is_refused_not_lost_silently(writer) -> None:
    writer.failures = [ValueError("bad row")] * 3
    pipeline = pipeline_for(writer, retry_max_delay=0.01)
    future = pipeline.submit(message("d1"), wait_stored=True)
    with pytest.raises(ValueError):
        await future
    # The pipeline goes on with the next batches.
    await pipeline.submit(message("d2"), wait_stored=True)
    assert writer.rows == 1
    await pipeline.stop(1)


async def test_accepted_mode_returns_no_future_but_still_writes(writer) -> None:
    pipeline = pipeline_for(writer)
    assert pipeline.submit(message("d1", 2), wait_stored=False) is None
    await pipeline.stop(1)
    assert writer.rows == 2


async def test_stop_drains_everything_queued(writer) -> None:
    writer.open.clear()
    pipeline = pipeline_for(writer, batch_max_rows=5, writers=2)
    futures = [pipeline.submit(message(f"d{i}", 2), wait_stored=True) for i in range(50)]
    stopping = asyncio.ensure_future(pipeline.stop(5))
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        pipeline.submit(message("late"), wait_stored=True)
    writer.open.set()
    await stopping
    await asyncio.gather(*futures)
    assert writer.rows == 100


async def test_stop_deadline_refuses_what_could_not_be_written(writer) -> None:
    writer.open.clear()
    pipeline = pipeline_for(writer, writers=1, batch_max_rows=2)
    futures = [pipeline.submit(message(f"d{i}", 2), wait_stored=True) for i in range(3)]
    await pipeline.stop(0.05)
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, (Unavailable, asyncio.CancelledError)) for r in results)
    assert writer.rows == 0


class PoisonWriter(MemoryWriter):
    """Refuses any batch holding a message of the device "poison"."""

    async def write(self, telemetry, attributes) -> None:
        self.calls += 1
        if any(m.device_id == "poison" for m in telemetry):
            raise ValueError("cannot store this row")
        self.batches.append([*telemetry, *attributes])


async def test_one_bad_message_is_refused_alone_not_its_batch() -> None:
    writer = PoisonWriter()
    pipeline = pipeline_for(writer, batch_max_age=0.05, retry_max_delay=0.01)
    futures = {name: pipeline.submit(message(name, 2), wait_stored=True)
               for name in ("a", "b", "poison", "c", "d")}
    results = dict(zip(futures, await asyncio.gather(*futures.values(), return_exceptions=True)))
    assert isinstance(results.pop("poison"), ValueError)
    assert all(r is None for r in results.values())
    assert writer.rows == 8
    await pipeline.stop(1)



class StartedWriter(MemoryWriter):
    """Tells each write's message count as the write starts."""

    def __init__(self) -> None:
        super().__init__()
        self.started: asyncio.Queue[int] = asyncio.Queue()

    async def write(self, telemetry, attributes) -> None:
        self.started.put_nowait(len(telemetry) + len(attributes))
        await super().write(telemetry, attributes)


@pytest.mark.parametrize(("max_age", "min_age"), [(10.0, 0.001), (0.05, 0.05)], ids=["short-age", "equal-ages"])
async def test_an_idle_pipeline_commits_after_the_short_age_not_the_long_one(writer, max_age, min_age) -> None:
    # Equal ages make every batch wait the same, as a fixed batch age does.
    pipeline = pipeline_for(writer, batch_max_age=max_age, batch_min_age=min_age)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    async with asyncio.timeout(2):
        await pipeline.submit(message("d1"), wait_stored=True)
    assert loop.time() - sent >= min_age
    await pipeline.stop(1)


async def test_a_batch_gathers_behind_a_write_in_flight_and_goes_when_it_ends() -> None:
    writer = StartedWriter()
    writer.open.clear()
    pipeline = pipeline_for(writer, batch_max_age=10.0, batch_min_age=0.0, writers=2)
    first = pipeline.submit(message("d1"), wait_stored=True)
    async with asyncio.timeout(2):
        assert await writer.started.get() == 1
    later = [pipeline.submit(message(f"d{i}"), wait_stored=True) for i in (2, 3)]
    for _ in range(10):  # a writer is free, yet the batch waits behind the one in flight
        await asyncio.sleep(0)
    assert writer.started.empty()
    writer.open.set()
    async with asyncio.timeout(2):
        assert await writer.started.get() == 2  # both, at once, in one batch
        await asyncio.gather(first, *later)
    await pipeline.stop(1)

