"""Recovery: the back-off between attempts ends when the probe sees the database come back,
and only then."""

from __future__ import annotations

import asyncio

import pytest

from fleetgate.core.errors import Unavailable
from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.recovery import Recovery
from fleetgate.core.telemetry_model import KeyValue, Reading, TelemetryMessage, ValueType

LONG = 30.0  # a back-off delay no test waits out


class Database:
    """Down until ``back`` is set; counts the probes it refused."""

    def __init__(self) -> None:
        self.back = asyncio.Event()
        self.refused = asyncio.Event()
        self.refused_often = asyncio.Event()  # 20 probes refused
        self.probes = 0

    async def probe(self) -> None:
        self.probes += 1
        if not self.back.is_set():
            if self.probes >= 20:
                self.refused_often.set()
            self.refused.set()
            raise ConnectionRefusedError()


async def test_the_wait_ends_when_the_database_comes_back() -> None:
    db = Database()
    waiting = asyncio.create_task(Recovery(db.probe, interval=0.005).wait(LONG))
    await db.refused.wait()
    db.back.set()
    async with asyncio.timeout(5):
        assert await waiting is True


async def test_a_database_that_answers_at_once_leaves_the_delay_as_it_is() -> None:
    db = Database()
    db.back.set()
    waiting = asyncio.create_task(Recovery(db.probe, interval=0.005).wait(0.2))
    done, _ = await asyncio.wait([waiting], timeout=0.1)
    assert not done, "a write failing for another reason would be retried in a tight loop"
    assert await waiting is False
    assert db.probes == 1


async def test_a_probe_that_hangs_ends_with_the_delay() -> None:
    async def frozen() -> None:
        await asyncio.Event().wait()  # a SIGSTOPped server: the connection never answers

    assert await Recovery(frozen).wait(0.05) is False


async def test_without_a_probe_it_is_a_plain_back_off() -> None:
    assert await Recovery().wait(0.01) is False


class DownWriter:
    """Unavailable until the database is back; then stores."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.stored: list[TelemetryMessage] = []

    async def write(self, telemetry, attributes) -> None:
        if not self.db.back.is_set():
            raise Unavailable("PostgreSQL is down")
        self.stored.extend(telemetry)


@pytest.mark.parametrize("retry_max_delay", [LONG])
async def test_the_pipeline_acknowledges_as_soon_as_the_database_is_back(retry_max_delay: float) -> None:
    db = Database()
    writer = DownWriter(db)
    pipeline = IngestPipeline(writer, IngestSettings(retry_max_delay=retry_max_delay),
                              Recovery(db.probe, interval=0.005))
    pipeline.start()
    try:
        message = TelemetryMessage("d", (Reading(1, (KeyValue("k", ValueType.LONG, 1),)),))
        stored = pipeline.submit(message, wait_stored=True)
        assert stored is not None
        # Let the back-off grow past its first delays: recovery must not wait them out.
        await db.refused_often.wait()
        db.back.set()
        async with asyncio.timeout(2):
            await stored
        assert writer.stored == [message]
    finally:
        await pipeline.stop(1)
