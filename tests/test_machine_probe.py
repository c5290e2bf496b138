"""The bench's machine probe: the disk's fdatasync times beside a run, from a process of its own
that stops when the run ends, however it ends, and leaves nothing behind; and how busy the cores
were over the run."""

from __future__ import annotations

import asyncio
import os

import pytest

from fleetgate.simulator.machine_probe import DiskStalls, Floor, floor_notes, probed


def test_the_summary_of_fdatasync_times() -> None:
    times = [0.0002] * 98 + [0.004, 0.9]
    stalls = DiskStalls.of(times)
    assert (stalls.fsyncs, stalls.stalls) == (100, 1)
    assert stalls.p50_ms == pytest.approx(0.2) and stalls.p99_ms == pytest.approx(900.0)
    assert stalls.max_ms == pytest.approx(900.0)
    assert DiskStalls.of([]) == DiskStalls(0, 0.0, 0.0, 0.0, 0)


def test_what_the_report_says_of_the_machine() -> None:
    floor = Floor(DiskStalls.of([0.0002] * 98 + [0.004, 0.9]), 0.83)
    assert floor.brief() == "the disk's longest fdatasync in the run 900.0 ms; cores 83% busy"
    assert floor_notes(14000, floor) == (
        "machine during the gateway at 14,000/s: disk 100 fdatasyncs of 8 kB: p50 0.20 ms, p99 900.00 ms, "
        f"max 900.0 ms, 1 over 50 ms; all {os.cpu_count()} cores 83% busy",)
    assert Floor(None, 0.5).brief() == "cores 50% busy"
    assert floor_notes(14000, Floor(None, None)) == () and floor_notes(14000, None) == ()


async def test_a_run_is_measured_with_the_machine_beside_it(tmp_path) -> None:
    async def run() -> str:
        await asyncio.sleep(0.3)
        return "done"

    result, floor = await probed(tmp_path, run())
    assert result == "done"
    disk = floor.disk
    assert disk is not None and disk.fsyncs >= 2 and 0 < disk.p50_ms <= disk.max_ms
    assert floor.busy is not None and 0 <= floor.busy <= 1
    assert list(tmp_path.iterdir()) == []


async def test_a_failed_run_stops_the_probe_too(tmp_path) -> None:
    async def run() -> None:
        await asyncio.sleep(0.1)
        raise RuntimeError("the run failed")

    with pytest.raises(RuntimeError, match="the run failed"):
        await probed(tmp_path, run())
    assert list(tmp_path.iterdir()) == []
