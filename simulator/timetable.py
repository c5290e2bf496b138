"""The open loops' timetable: item k due at ``start + k / rate``, whatever the server's pace,
and the window measured on it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

_TICK_S = 0.001  # the shortest wait: uvloop's timers have millisecond resolution


async def timetable(
    start_ns: int, rate: float, total: int, dispatch: Callable[[int, int], None],
    on_index: Callable[[int], None] | None = None,
) -> None:
    """Call ``dispatch(k, due_ns)`` for k in 0..total-1 at ``start + k / rate``, catching up
    at once on what is overdue; ``on_index(k)`` first, for bookkeeping."""
    ns_per_item = 1e9 / rate
    k = 0
    while k < total:
        now = time.perf_counter_ns()
        due = start_ns + round(k * ns_per_item)
        while due <= now:
            if on_index is not None:
                on_index(k)
            dispatch(k, due)
            k += 1
            if k == total:
                return
            due = start_ns + round(k * ns_per_item)
        await asyncio.sleep(max((due - time.perf_counter_ns()) / 1e9, _TICK_S))


class OpenLoopClock:
    """An open loop's timetable and measurement window: ``rate`` items a second for
    ``warmup + duration`` seconds (at most ``limit``), the window holding those due
    after the warm-up, and the process's CPU time from the first of them to the
    end of the timetable."""

    __slots__ = ("_cpu", "first_in_window", "rate", "start_ns", "total", "window_ns")

    def __init__(self, rate: float, warmup: float, duration: float, limit: int) -> None:
        self.rate = rate
        self.total = min(math.ceil((warmup + duration) * rate), limit)
        self.first_in_window = math.ceil(warmup * rate)
        self.start_ns = time.perf_counter_ns()
        self.window_ns = (self.start_ns + round(warmup * 1e9), self.start_ns + round((warmup + duration) * 1e9))
        self._cpu = [time.process_time(), 0.0]

    async def run(self, dispatch: Callable[[int, int], None]) -> None:
        """``dispatch(k, due_ns)`` for every item on the timetable."""
        first, cpu = self.first_in_window, self._cpu
        await timetable(
            self.start_ns, self.rate, self.total, dispatch,
            on_index=lambda k: cpu.__setitem__(0, time.process_time()) if k == first else None,
        )
        self.stop()

    def stop(self) -> None:
        """End the CPU measurement, unless the timetable already did (a run cut short)."""
        if not self._cpu[1]:
            self._cpu[1] = time.process_time()

    @property
    def window_s(self) -> float:
        return max(0, self.total - self.first_in_window) / self.rate

    @property
    def cpu_s(self) -> float:
        return self._cpu[1] - self._cpu[0]
