"""Latency and throughput second by second: what ``iot-gateway simulate --plot`` draws.

A :class:`TimelineRecorder` is a :class:`~simulator.stats.LatencyRecorder`
that also counts each latency into the second of the run it was recorded in
(sparse bucket counts, the histogram's layout), so per-second throughput and
percentiles come out of it, and timelines from several generator processes
merge exactly (they start on the same ``go``). Its ``count`` is what the live
progress display reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fleetgate.simulator.stats import _EXACT, _MAX_BUCKETS, _SUB_BITS, Histogram, LatencyRecorder

_MAX_SECONDS = 24 * 3600  # later records share the last second


class TimelineRecorder(LatencyRecorder):
    __slots__ = ("_seconds", "_start_ns")

    def __init__(self) -> None:
        super().__init__()
        self._start_ns = time.perf_counter_ns()
        self._seconds: list[dict[int, int]] = []

    def begin(self) -> None:
        """Second 0 starts now (the run's ``go``)."""
        self._start_ns = time.perf_counter_ns()

    def record_ns(self, elapsed_ns: int) -> None:
        super().record_ns(elapsed_ns)
        us = elapsed_ns // 1000 if elapsed_ns > 0 else 0
        if us < _EXACT:
            index = us
        else:
            shift = us.bit_length() - _SUB_BITS - 1
            index = min((shift << _SUB_BITS) + (us >> shift), _MAX_BUCKETS - 1)
        second = min((time.perf_counter_ns() - self._start_ns) // 1_000_000_000, _MAX_SECONDS)
        seconds = self._seconds
        while len(seconds) <= second:
            seconds.append({})
        counts = seconds[second]
        counts[index] = counts.get(index, 0) + 1

    def timeline(self) -> tuple[Histogram, ...]:
        """One histogram a second (bucket counts only: min, max and sum are not kept a second)."""
        return tuple(
            Histogram(tuple(sorted(counts.items())), sum(counts.values())) for counts in self._seconds
        )


def per_second(timeline: Sequence[Histogram]) -> list[dict[str, float]]:
    """For each second: messages answered, and p50/p99/max latency in milliseconds (bucket bounds)."""
    rows = []
    for second, h in enumerate(timeline):
        if not h.count:
            rows.append({"t": second, "messages": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0})
            continue
        # max_us is not kept a second: the top bucket's upper bound stands for it.
        bounded = Histogram(h.buckets, h.count, 0, 0, 1 << 62)
        top = bounded.percentile(100)
        rows.append({
            "t": second, "messages": h.count,
            "p50_ms": round(bounded.percentile(50) / 1000, 3), "p99_ms": round(bounded.percentile(99) / 1000, 3),
            "max_ms": round(top / 1000, 3),
        })
    return rows
