"""What the machine gave a measured run: the disk's own stalls, and how busy the cores were.

A stored acknowledgement waits for PostgreSQL's WAL fsync, so when the disk stalls, every
acknowledgement in flight stalls with it, whatever the gateway does; mosquitto, which keeps
nothing, never waits for the disk. On the shared virtual disks this project is measured on,
an idle machine's fdatasync takes 0.2 ms at the median and, a few times a minute, 0.1 to 1.5 s.
One such stall in a 10-s open loop puts more than 1% of its messages behind it, so the run's p99
says more about the disk than about the gateway. The bench therefore measures the disk beside
each open loop, as it measures mosquitto beside the gateway: a small process in the bench's
directory (the filesystem of the bench's PostgreSQL) overwrites 8 kB of a preallocated file and
calls fdatasync every 10 ms, as a commit does on a WAL segment, and reports how long each took.

The cores are the other floor: the generator, the gateway and PostgreSQL share them, and once
together they keep them nearly all busy, every process waits for a core. How busy they were
over the run is read from /proc/stat (Linux) before and after it.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_BLOCK = 8192
_FILE_BYTES = 1 << 20
_EVERY_S = 0.010
_MAX_S = 3600.0  # a probe whose bench vanished stops on its own
STALL_MS = 50.0


@dataclass(frozen=True, slots=True)
class DiskStalls:
    """How the disk's fdatasync fared during one run."""

    fsyncs: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    stalls: int  # fdatasyncs over STALL_MS

    @classmethod
    def of(cls, seconds: list[float]) -> DiskStalls:
        ordered = sorted(seconds)
        n = len(ordered)
        if not n:
            return cls(0, 0.0, 0.0, 0.0, 0)
        return cls(n, ordered[n // 2] * 1e3, ordered[min(n - 1, n * 99 // 100)] * 1e3, ordered[-1] * 1e3,
                   sum(s * 1e3 > STALL_MS for s in ordered))

    def brief(self) -> str:
        return f"the disk's longest fdatasync in the run {self.max_ms:.1f} ms"

    def describe(self) -> str:
        return (f"{self.fsyncs:,} fdatasyncs of 8 kB: p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, "
                f"max {self.max_ms:.1f} ms, {self.stalls} over {STALL_MS:g} ms")


@dataclass(frozen=True, slots=True)
class Floor:
    """The machine during one run: the disk's fdatasyncs (None if the probe could not run) and
    the share of all cores busy (None where /proc/stat is not)."""

    disk: DiskStalls | None
    busy: float | None

    def brief(self) -> str:
        parts = [] if self.disk is None else [self.disk.brief()]
        if self.busy is not None:
            parts.append(f"cores {self.busy:.0%} busy")
        return "; ".join(parts)

    def notes(self, rate: float) -> tuple[str, ...]:
        """The report's note on the machine during the gateway's open loop at ``rate``."""
        parts = [] if self.disk is None else [f"disk {self.disk.describe()}"]
        if self.busy is not None:
            parts.append(f"all {os.cpu_count()} cores {self.busy:.0%} busy")
        return (f"machine during the gateway at {rate:,.0f}/s: {'; '.join(parts)}",) if parts else ()


def floor_notes(rate: float, floor: Floor | None) -> tuple[str, ...]:
    return () if floor is None else floor.notes(rate)


async def probed(directory: Path, run: Awaitable[T]) -> tuple[T, Floor]:
    """Await ``run`` with the disk probe beside it and the cores' time counted over it."""
    before = _cpu_times()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate.simulator.machine_probe", str(directory),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        result = await run
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the probe stops at the end of its input
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
            output = b""
    after = _cpu_times()
    busy = None
    if before is not None and after is not None and after[0] > before[0]:
        busy = 1 - (after[1] - before[1]) / (after[0] - before[0])
    try:
        disk: DiskStalls | None = DiskStalls.of(json.loads(output))
    except ValueError:
        disk = None
    return result, Floor(disk, busy)


def _cpu_times() -> tuple[int, int] | None:
    """(all, idle) clock ticks of all cores since boot, idle counting iowait too."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(fields), fields[3] + fields[4]


def main(directory: str) -> None:
    path = Path(directory) / f"disk-probe-{os.getpid()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    seconds: list[float] = []
    try:
        # Written and synced once first, so that the overwrites below allocate nothing (as on a
        # WAL segment, which PostgreSQL fills with zeros when it makes it).
        os.pwrite(fd, bytes(_FILE_BYTES), 0)
        os.fsync(fd)
        block, offset, deadline = b"\x01" * _BLOCK, 0, time.monotonic() + _MAX_S
        # The pause between probes is the wait for the bench to close our input.
        while not select.select([sys.stdin], [], [], _EVERY_S)[0] and time.monotonic() < deadline:
            started = time.perf_counter()
            os.pwrite(fd, block, offset)
            os.fdatasync(fd)
            seconds.append(time.perf_counter() - started)
            offset = (offset + _BLOCK) % _FILE_BYTES
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    json.dump(seconds, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
