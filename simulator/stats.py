"""Latency and throughput accounting for the load generators.

Latencies go into a log-linear histogram with HdrHistogram's layout: values
below 256 microseconds are counted exactly, larger ones in 128 sub-buckets per
power of two, so a reported percentile is at most 1/128 (0.8%) above the value
recorded. Recording costs a few integer operations, memory is bounded for runs
of any length, and histograms from several generator processes merge exactly.

Results are frozen dataclasses with a JSON form; the worker processes send
theirs to the bench in that form, histogram included.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

_EXACT = 256  # values below this are their own bucket
_SUB_BITS = 7  # 128 sub-buckets per power of two above it
_MAX_BUCKETS = 4096  # covers about 2**31 microseconds (35 minutes); larger values are clamped


def bucket_index(value: int) -> int:
    """The bucket of a non-negative integer value."""
    if value < _EXACT:
        return value if value > 0 else 0
    shift = value.bit_length() - _SUB_BITS - 1  # value >> shift is in [128, 255]
    return (shift << _SUB_BITS) + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest value counted in bucket ``index``."""
    if index < _EXACT:
        return index, index
    shift = (index >> _SUB_BITS) - 1
    mantissa = index - (shift << _SUB_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class LatencyRecorder:
    """Mutable, for the hot path: record nanoseconds, freeze into a :class:`Histogram`."""

    __slots__ = ("_counts", "count", "max_us", "min_us", "total_us")

    def __init__(self) -> None:
        self._counts = [0] * _MAX_BUCKETS
        self.count = 0
        self.total_us = 0
        self.min_us = 0
        self.max_us = 0

    def record_ns(self, elapsed_ns: int) -> None:
        us = elapsed_ns // 1000 if elapsed_ns > 0 else 0
        if us < _EXACT:
            index = us
        else:
            shift = us.bit_length() - _SUB_BITS - 1
            index = (shift << _SUB_BITS) + (us >> shift)
            if index >= _MAX_BUCKETS:
                index = _MAX_BUCKETS - 1
        self._counts[index] += 1
        if self.count == 0 or us < self.min_us:
            self.min_us = us
        if us > self.max_us:
            self.max_us = us
        self.count += 1
        self.total_us += us

    def freeze(self) -> Histogram:
        buckets = tuple((i, c) for i, c in enumerate(self._counts) if c)
        return Histogram(buckets, self.count, self.total_us, self.min_us, self.max_us)


class MeasurementWindow:
    """A closed loop's measurement window: opened after the warm-up, closed at its end
    (or when the run ends early), with the wall and CPU time between."""

    __slots__ = ("_cpu", "_ns", "measuring")

    def __init__(self) -> None:
        self.measuring = False
        self._ns = [0, 0]
        self._cpu = [0.0, 0.0]

    def open(self) -> None:
        self.measuring = True
        self._cpu[0] = time.process_time()
        self._ns[0] = time.perf_counter_ns()

    def close(self) -> None:
        if self.measuring:
            self._ns[1] = time.perf_counter_ns()
            self._cpu[1] = time.process_time()
            self.measuring = False

    def schedule(self, warmup: float, duration: float, on_end: Callable[[], None]) -> list[asyncio.TimerHandle]:
        """Open after ``warmup`` seconds (at once without one) and call ``on_end`` after
        ``warmup + duration``; the timers, for the caller to cancel if its run ends first."""
        loop = asyncio.get_running_loop()
        timers = [loop.call_later(warmup + duration, on_end)]
        if warmup > 0:
            timers.append(loop.call_later(warmup, self.open))
        else:
            self.open()
        return timers

    @property
    def seconds(self) -> float:
        return max(0, self._ns[1] - self._ns[0]) / 1e9

    @property
    def cpu_s(self) -> float:
        return max(0.0, self._cpu[1] - self._cpu[0])


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Percentiles in milliseconds (nearest rank); all zero when nothing was recorded."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "count": self.count, "mean": self.mean_ms, "p50": self.p50_ms, "p90": self.p90_ms,
            "p95": self.p95_ms, "p99": self.p99_ms, "p99.9": self.p999_ms, "max": self.max_ms,
        }


@dataclass(frozen=True, slots=True)
class Histogram:
    """Frozen latency counts in microseconds: sparse (bucket, count) pairs in bucket order."""

    buckets: tuple[tuple[int, int], ...] = ()
    count: int = 0
    total_us: int = 0
    min_us: int = 0
    max_us: int = 0

    @classmethod
    def of(cls, values_us: Iterable[int]) -> Histogram:
        recorder = LatencyRecorder()
        for value in values_us:
            recorder.record_ns(value * 1000)
        return recorder.freeze()

    def merge(self, other: Histogram) -> Histogram:
        if not other.count:
            return self
        if not self.count:
            return other
        counts: dict[int, int] = dict(self.buckets)
        for index, n in other.buckets:
            counts[index] = counts.get(index, 0) + n
        return Histogram(
            tuple(sorted(counts.items())),
            self.count + other.count,
            self.total_us + other.total_us,
            min(self.min_us, other.min_us),
            max(self.max_us, other.max_us),
        )

    def merge_counts(self, other: Histogram) -> Histogram:
        """Bucket counts only (a timeline's seconds keep no min, max or sum)."""
        counts = dict(self.buckets)
        for index, n in other.buckets:
            counts[index] = counts.get(index, 0) + n
        return Histogram(tuple(sorted(counts.items())), self.count + other.count)

    def percentile(self, q: float) -> int:
        """The nearest-rank ``q``-th percentile (0 < q <= 100) in microseconds, 0 when empty.

        It is the largest value of the bucket holding that rank, never above the
        largest value recorded.
        """
        if not 0 < q <= 100:
            raise ValueError(f"percentile must be in (0, 100], not {q}")
        if not self.count:
            return 0
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index, n in self.buckets:
            seen += n
            if seen >= rank:
                return max(min(bucket_bounds(index)[1], self.max_us), self.min_us)
        return self.max_us

    def summary(self) -> LatencySummary:
        if not self.count:
            return LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ms = self._ms
        return LatencySummary(
            count=self.count,
            mean_ms=round(self.total_us / self.count / 1000, 3),
            p50_ms=ms(50), p90_ms=ms(90), p95_ms=ms(95), p99_ms=ms(99), p999_ms=ms(99.9),
            max_ms=round(self.max_us / 1000, 3),
        )

    def _ms(self, q: float) -> float:
        return round(self.percentile(q) / 1000, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "buckets": [list(b) for b in self.buckets], "count": self.count, "total_us": self.total_us,
            "min_us": self.min_us, "max_us": self.max_us,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        return cls(
            tuple((int(i), int(n)) for i, n in data["buckets"]), int(data["count"]), int(data["total_us"]),
            int(data["min_us"]), int(data["max_us"]),
        )


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one load run measured, in one generator process or merged over several.

    ``ok`` counts successful requests in the measurement window (for a closed
    loop, those answered in it; for an open loop, those scheduled in it), and
    the histogram holds their latencies. ``errors`` counts failures by kind over
    the whole run (priming, warm-up and drain included); ``total_ok`` counts
    successes over the whole run (what the database must hold afterwards).
    """

    kind: str
    connections: int
    window_s: float
    ok: int
    datapoints_per_request: int
    histogram: Histogram
    errors: Mapping[str, int] = field(default_factory=dict)
    total_ok: int = 0
    cpu_s: float = 0.0
    processes: int = 1
    target_rate: float | None = None
    connect_s: float = 0.0  # how long connecting took (the longest of the generator processes)
    timeline: tuple[Histogram, ...] = ()  # latencies a second, when asked for (simulator.timeline)
    server_cpu_s: float | None = None  # the server's CPU time over the window (simulator.server_cpu)

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.window_s if self.window_s > 0 else 0.0

    @property
    def datapoints_per_s(self) -> float:
        return self.requests_per_s * self.datapoints_per_request

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def generator_cpu_share(self) -> float:
        """CPU time of the generator processes over the window, as a share of one core each."""
        return self.cpu_s / (self.window_s * self.processes) if self.window_s > 0 else 0.0

    @property
    def server_cpu_us(self) -> float | None:
        """The server's CPU time a request (message) of the window, in microseconds."""
        if self.server_cpu_s is None or not self.ok:
            return None
        return self.server_cpu_s / self.ok * 1e6

    @property
    def latency(self) -> LatencySummary:
        return self.histogram.summary()

    def merge(self, other: LoadResult) -> LoadResult:
        """Two generator processes that ran the same window side by side."""
        errors = dict(self.errors)
        for kind, n in other.errors.items():
            errors[kind] = errors.get(kind, 0) + n
        rates = [r for r in (self.target_rate, other.target_rate) if r is not None]
        return LoadResult(
            kind=self.kind,
            connections=self.connections + other.connections,
            window_s=max(self.window_s, other.window_s),
            ok=self.ok + other.ok,
            datapoints_per_request=self.datapoints_per_request,
            histogram=self.histogram.merge(other.histogram),
            errors=errors,
            total_ok=self.total_ok + other.total_ok,
            cpu_s=self.cpu_s + other.cpu_s,
            processes=self.processes + other.processes,
            target_rate=sum(rates) if rates else None,
            connect_s=max(self.connect_s, other.connect_s),
            timeline=merge_timelines(self.timeline, other.timeline),
        )

    def with_priming(self, primed: LoadResult) -> LoadResult:
        """Count the requests that opened the connections (not measured) in the run's totals."""
        return replace(self.with_errors(primed.errors), total_ok=self.total_ok + primed.total_ok)

    def with_errors(self, more: Mapping[str, int]) -> LoadResult:
        """Failures outside the load itself (connections refused...) added to the run's count."""
        if not more:
            return self
        errors = dict(self.errors)
        for kind, n in more.items():
            errors[kind] = errors.get(kind, 0) + n
        return replace(self, errors=errors)

    def to_json(self, *, histogram: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "connections": self.connections,
            "window_s": round(self.window_s, 6),
            "requests": self.ok,
            "requests_per_s": round(self.requests_per_s, 1),
            "datapoints_per_request": self.datapoints_per_request,
            "datapoints_per_s": round(self.datapoints_per_s, 1),
            "target_rate": self.target_rate,
            "latency_ms": self.latency.to_json(),
            "errors": dict(self.errors),
            "error_count": self.error_count,
            "total_ok": self.total_ok,
            "generator_processes": self.processes,
            "generator_cpu_s": round(self.cpu_s, 6),
            "generator_cpu_share": round(self.generator_cpu_share, 3),
            "connect_s": round(self.connect_s, 6),
        }
        if self.server_cpu_s is not None:
            data["server_cpu_s"] = round(self.server_cpu_s, 3)
            data["server_cpu_us_per_request"] = None if self.server_cpu_us is None else round(self.server_cpu_us, 2)
        if histogram:
            data["histogram"] = self.histogram.to_json()
            data["timeline"] = timeline_to_json(self.timeline)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadResult:
        return cls(
            kind=data["kind"],
            connections=int(data["connections"]),
            window_s=float(data["window_s"]),
            ok=int(data["requests"]),
            datapoints_per_request=int(data["datapoints_per_request"]),
            histogram=Histogram.from_json(data["histogram"]),
            errors={str(k): int(v) for k, v in data["errors"].items()},
            total_ok=int(data["total_ok"]),
            cpu_s=float(data["generator_cpu_s"]),
            processes=int(data["generator_processes"]),
            target_rate=data.get("target_rate"),
            connect_s=float(data.get("connect_s", 0.0)),
            timeline=timeline_from_json(data.get("timeline", ())),
            server_cpu_s=data.get("server_cpu_s"),
        )


def merge_timelines(a: tuple[Histogram, ...], b: tuple[Histogram, ...]) -> tuple[Histogram, ...]:
    """Two processes' latencies a second (simulator.timeline), second by second."""
    longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
    return tuple(h.merge_counts(shorter[i]) if i < len(shorter) else h for i, h in enumerate(longer))


def timeline_to_json(timeline: tuple[Histogram, ...]) -> list[Any]:
    return [[list(bucket) for bucket in h.buckets] for h in timeline]


def timeline_from_json(data: Any) -> tuple[Histogram, ...]:
    out = []
    for buckets in data or ():
        pairs = tuple((int(i), int(n)) for i, n in buckets)
        out.append(Histogram(pairs, sum(n for _, n in pairs)))
    return tuple(out)


def merge_all(results: Iterable[LoadResult]) -> LoadResult:
    merged: LoadResult | None = None
    for result in results:
        merged = result if merged is None else merged.merge(result)
    if merged is None:
        raise ValueError("no results to merge")
    return merged
