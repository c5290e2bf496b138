"""The open loops' timetable: item k due at ``start + k / rate``, whatever the server's pace."""

from __future__ import annotations

import asyncio
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
