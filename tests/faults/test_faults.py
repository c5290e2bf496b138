"""Fault injection under steady load (issue 8): MQTT QoS 1, HTTP and CoAP CON devices send
at a fixed rate while, one scenario at a time, PostgreSQL is stopped (-m immediate),
the writer's backends are terminated, PostgreSQL is frozen (SIGSTOP), the gateway is
SIGKILLed and started again, or the data disk fills up. Each scenario has its own
PostgreSQL and gateway process.

After each: every acknowledged message is in ts_kv exactly once (lost = 0, duplicated
= 0), what was not acknowledged arrived once the devices retransmitted, the gateway
never crashed (it exits 0 on SIGTERM; only the one SIGKILLed died), and while the
database was away the queue filled, every front-end pushed back (HTTP 503, CoAP 5.03,
MQTT sockets left unread) and the gateway's memory stayed bounded.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from tests.faults import faults
from tests.faults.diskfull import SmallDisk, move_ts_kv
from tests.faults.ledger import RESULTS, Accounting, Clock
from tests.faults.observe import Sampler
from tests.faults.rig import INGEST_QUEUE_ROWS, Rig

pytestmark = pytest.mark.slow

FREEZE_SECONDS = 30  # SIGSTOP on PostgreSQL, as the issue says
OUTAGE_SECONDS = 8  # PostgreSQL stopped, or its disk full
TERMINATE_SECONDS = 5  # writer backends terminated again and again
WARM_SECONDS = 3  # load before the fault
AFTER_SECONDS = 3  # load after it, before production stops
DRAIN_SECONDS = 60  # the most the devices retransmit for after production stops
MAX_PRODUCE_SECONDS = 120  # production's bound, whatever happens
RECOVERY_MS = 400  # the database back -> the first acknowledgement
RSS_GROWTH_MIB = 40  # the most the gateway may grow while the database is away

Fault = Callable[[Rig, Sampler], Awaitable[str]]


async def run(rig: Rig, scenario: str, fault: Fault) -> tuple[Accounting, Sampler, Counter[str]]:
    started = time.monotonic()
    clock = Clock(produce_for=MAX_PRODUCE_SECONDS, drain_for=DRAIN_SECONDS)
    sampler = rig.sampler()
    sampler.start()
    driving = asyncio.create_task(rig.drive(clock), name="fault-load")
    try:
        await asyncio.sleep(WARM_SECONDS)  # a load window
        before = Counter(clock.events)
        with sampler.phase("outage"):
            note = await fault(rig, sampler)
        during = clock.events - before
        with sampler.phase("after"):
            await asyncio.sleep(AFTER_SECONDS)  # a load window
            clock.stop_producing()
            await driving
    finally:
        clock.stop_producing()
        if not driving.done():
            driving.cancel()
        await asyncio.gather(driving, return_exceptions=True)
        await sampler.stop()
    accounting = await rig.account(scenario, started, clock.events)
    accounting = replace(accounting, events=f"{note}; {memory(sampler)}; clients: {accounting.events}")
    RESULTS.append(accounting)
    return accounting, sampler, during


def memory(sampler: Sampler) -> str:
    warm = max(s.rss_kib for s in sampler.of("warm"))
    during = [s.rss_kib for s in sampler.of("outage") if s.rss_kib]
    if not during:
        return f"rss {warm / 1024:.0f} MiB before (the gateway was down during the fault)"
    return f"rss {warm / 1024:.0f} -> {max(during) / 1024:.0f} MiB"


def assert_nothing_lost(rig: Rig, accounting: Accounting) -> None:
    assert accounting.lost == 0, accounting
    assert accounting.duplicated == 0, accounting
    assert accounting.acknowledged == accounting.sent, f"unacknowledged at the end: {accounting}"
    assert accounting.unacknowledged_missing == 0, accounting
    assert accounting.stored == accounting.sent, accounting
    assert not rig.crashes(), rig.crashes()
    # An outage is a warning and a summary, never a traceback per attempt.
    assert not rig.logged("Traceback"), rig.tracebacks()


def assert_pushed_back(sampler: Sampler, during: Counter[str]) -> None:
    """The queue filled, each front-end pushed back, memory stayed bounded."""
    outage = sampler.of("outage")
    depths = [s.queue_rows for s in outage if s.queue_rows is not None]
    assert depths and max(depths) >= INGEST_QUEUE_ROWS - 1, f"the queue never filled: {depths}"
    assert during["http 503"] > 0, during
    assert during["coap 5.03"] > 0, during
    assert max(s.mqtt_unread_bytes for s in outage) > 0, "the MQTT front-end never stopped reading"
    warm = max(s.rss_kib for s in sampler.of("warm"))
    peak = max(s.rss_kib for s in outage)
    assert peak - warm < RSS_GROWTH_MIB * 1024, f"grew from {warm} to {peak} KiB"


@pytest.fixture
async def rig(tmp_path):
    rig = await Rig.create(tmp_path)
    try:
        yield rig
    finally:
        await rig.close()


async def test_postgres_stopped_immediate_and_restarted(rig: Rig) -> None:
    async def fault(rig: Rig, sampler: Sampler) -> str:
        await rig.server.stop("immediate")
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage
        await rig.server.start()
        rig.database_back()
        return f"down {OUTAGE_SECONDS}s"

    accounting, sampler, during = await run(rig, "pg stop -m immediate", fault)
    assert_nothing_lost(rig, accounting)
    assert_pushed_back(sampler, during)
    # The gateway probes a database that is down, rather than sleeping out a back-off: it
    # follows its return within about 100 ms (the bound here leaves room for a busy machine).
    assert accounting.recovery_ms is not None and accounting.recovery_ms < RECOVERY_MS, accounting


async def test_writer_backends_terminated(rig: Rig) -> None:
    async def fault(rig: Rig, sampler: Sampler) -> str:
        ended = await faults.terminate_writers(rig.server.url, TERMINATE_SECONDS)
        assert ended > 0, "no writer backend was caught"
        return f"{ended} backends terminated"

    accounting, _, _ = await run(rig, "pg_terminate_backend", fault)
    assert_nothing_lost(rig, accounting)


async def test_postgres_frozen_with_sigstop(rig: Rig) -> None:
    async def fault(rig: Rig, sampler: Sampler) -> str:
        frozen = await faults.freeze(rig.server, FREEZE_SECONDS)
        rig.database_back()
        return f"{frozen} processes stopped {FREEZE_SECONDS}s"

    accounting, sampler, during = await run(rig, "pg SIGSTOP 30s", fault)
    assert_nothing_lost(rig, accounting)
    assert_pushed_back(sampler, during)


async def test_gateway_sigkilled_and_started_again(rig: Rig) -> None:
    async def fault(rig: Rig, sampler: Sampler) -> str:
        await rig.kill_gateway()
        await rig.start_gateway()
        assert rig.gateway is not None
        sampler.repoint(rig.gateway.proc.pid)
        return "gateway SIGKILLed, restarted"

    accounting, _, _ = await run(rig, "gateway SIGKILL", fault)
    assert_nothing_lost(rig, accounting)
    assert [g.proc.returncode for g in rig.killed] == [-9]


async def test_disk_full(rig: Rig, tmp_path) -> None:
    """ts_kv on a tablespace on an 8-MiB tmpfs, filled by a file for OUTAGE_SECONDS."""
    disk = SmallDisk(tmp_path / "small-disk")
    reason = await disk.mount()
    if reason is not None:
        pytest.skip(f"disk full not simulated: {reason}")
    try:
        await move_ts_kv(rig.server.url, disk.tablespace_dir())

        async def fault(rig: Rig, sampler: Sampler) -> str:
            filled = disk.fill()
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage
            disk.free()
            rig.database_back()
            assert rig.logged("DiskFullError"), "PostgreSQL never ran out of space"
            return f"disk full {OUTAGE_SECONDS}s ({filled >> 10} KiB filler)"

        accounting, sampler, during = await run(rig, "disk full", fault)
        assert_nothing_lost(rig, accounting)
        assert_pushed_back(sampler, during)
    finally:
        await rig.close()
        await disk.unmount()
