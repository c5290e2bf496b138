"""The server's own CPU time over a run's measured window, to be divided by what it handled.

Latency and throughput on a shared 2-core machine move with whatever else runs; the CPU a
server spends on each message moves far less, and says which part of a run is the server's
cost. It is also where an open loop differs from a closed one: a message that arrives alone
is its own read, its own write and its own trip through the event loop, where a closed loop
amortises them over the messages each connection has in flight. Mosquitto, measured the same
way in the same run, is the baseline.

The window is the generators' (warm-up, then ``duration`` seconds), counted in this process
from the moment the load is started; the error is the few milliseconds the start takes to
reach the generators. The server's children (a supervisor's workers, a forwarder) are counted
with it; the bench's PostgreSQL is not a child of the gateway and is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib

from fleetgate.simulator.processes import tree_cpu_seconds

_LATE = 1.0  # seconds before its end a window is waited for rather than given up


class ServerCpu:
    """Counts ``pid``'s CPU time over ``warmup`` .. ``warmup + duration`` after ``start``."""

    def __init__(self, pid: int, warmup: float, duration: float) -> None:
        self._pid = pid
        self._warmup = warmup
        self._duration = duration
        self._end = 0.0  # loop time the window ends
        self._task: asyncio.Task[float | None] | None = None

    async def start(self) -> None:
        """When the load starts (run_load's ``on_ready``)."""
        self._end = asyncio.get_running_loop().time() + self._warmup + self._duration
        self._task = asyncio.create_task(self._count(), name=f"server-cpu-{self._pid}")

    async def seconds(self) -> float | None:
        """The CPU seconds over the window, once it has ended; None if the run ended well before it
        did, or if the server vanished."""
        task, self._task = self._task, None
        if task is None:
            return None
        # A run's results come as its window ends: this process's clock may be a little behind.
        if not task.done() and asyncio.get_running_loop().time() + _LATE < self._end:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            return await task
        return None

    async def _count(self) -> float | None:
        await asyncio.sleep(self._warmup)
        try:
            before = tree_cpu_seconds(self._pid)
            await asyncio.sleep(self._duration)
            return tree_cpu_seconds(self._pid) - before
        except OSError:
            return None
