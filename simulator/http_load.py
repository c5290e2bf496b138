"""Load drivers over open HTTP connections: a closed loop for maximum throughput and
an open loop at a fixed rate for latency.

Both are bounded in time and in count. Neither runs a task per connection:
everything happens in the connections' callbacks (a response arrives, the next
request is written at once), and the open loop's only coroutine walks the
timetable.

Closed loop: every connection sends its next request as soon as the previous
one is answered, for ``warmup + duration`` seconds; throughput and latencies are
those of the responses that arrive inside the window after the warm-up.

Open loop: request k is due at ``start + k / rate`` and goes to connection
``k mod n``; if that connection still waits for an answer, the request queues on
it. Latency runs from the due time, not the send time, so a slow server cannot
hide its slowness by delaying the requests it would have been measured on
(coordinated omission). The window holds the requests due after the warm-up.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Protocol

from fleetgate.simulator.http11 import UNOWNED, HttpConnection, close_all, connect_all
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.stats import LatencyRecorder, LoadResult, MeasurementWindow
from fleetgate.simulator.timeline import TimelineRecorder
from fleetgate.simulator.timetable import OpenLoopClock
from fleetgate.simulator.workloads import ProvisionSpec, ProvisionWorkload, TelemetrySpec, TelemetryWorkload

_TIMEOUT = "no response before the deadline"
_CONNECT_TIMEOUT = 60.0


class Workload(Protocol):
    """What to send on a connection, and whether an answer is a success."""

    @property
    def datapoints_per_request(self) -> int: ...

    def request(self, index: int) -> bytes: ...

    def check(self, index: int, status: int, body: bytes) -> str | None:
        """None for a success, else the kind of error to count."""
        ...


async def closed_loop(
    connections: Sequence[HttpConnection],
    workload: Workload,
    *,
    warmup: float,
    duration: float,
    max_requests: int,
    drain_timeout: float = 10.0,
    recorder: LatencyRecorder | None = None,
) -> LoadResult:
    """Saturate: each connection keeps one request in flight until the window ends
    (or ``max_requests`` have been sent), then the answers still due are awaited."""
    return await _ClosedLoop(connections, workload, max_requests, recorder).run(warmup, duration, drain_timeout)


async def open_loop(
    connections: Sequence[HttpConnection],
    workload: Workload,
    *,
    rate: float,
    warmup: float,
    duration: float,
    max_requests: int,
    drain_timeout: float = 10.0,
    recorder: LatencyRecorder | None = None,
) -> LoadResult:
    """Send ``rate`` requests a second on a timetable, whatever the server's pace."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return await _OpenLoop(connections, workload, rate, max_requests, recorder).run(warmup, duration, drain_timeout)


class _ClosedLoop:
    def __init__(
        self, connections: Sequence[HttpConnection], workload: Workload, max_requests: int,
        recorder: LatencyRecorder | None = None,
    ) -> None:
        self._connections = connections
        self._workload = workload
        self._request = workload.request
        self._check = workload.check
        self._left = max_requests
        self._recorder = recorder or LatencyRecorder()
        self._errors: Counter[str] = Counter()
        self._active = 0  # connections whose last request is not answered yet
        self._sending = False
        self._window = MeasurementWindow()
        self._ok = 0
        self._total_ok = 0
        self._done: asyncio.Future[None] | None = None

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        for conn in self._connections:
            conn.owner = self
        self._sending = True
        timers = self._window.schedule(warmup, duration, self._close_window)
        try:
            for conn in self._connections:
                if conn.open and self._left > 0:
                    self._left -= 1
                    self._active += 1
                    conn.send(self._request(conn.index), time.perf_counter_ns())
            if not self._active:
                self._done.set_result(None)
            try:
                async with asyncio.timeout(warmup + duration + drain_timeout):
                    await self._done
            except TimeoutError:
                self._errors[_TIMEOUT] += self._active
        finally:
            self._sending = False
            for timer in timers:
                timer.cancel()
            self._close_window()  # if ended early: every request sent and answered
            for conn in self._connections:
                conn.owner = UNOWNED
        return LoadResult(
            kind="closed-loop",
            connections=len(self._connections),
            window_s=self._window.seconds,
            ok=self._ok,
            datapoints_per_request=self._workload.datapoints_per_request,
            histogram=self._recorder.freeze(),
            errors=dict(self._errors),
            total_ok=self._total_ok,
            cpu_s=self._window.cpu_s,
        )

    def _close_window(self) -> None:
        self._window.close()
        self._sending = False

    def response(self, conn: HttpConnection, status: int, body: bytes) -> None:
        now = time.perf_counter_ns()
        error = self._check(conn.index, status, body)
        if error is None:
            self._total_ok += 1
            if self._window.measuring:
                self._ok += 1
                self._recorder.record_ns(now - conn.started_ns)
        else:
            self._errors[error] += 1
        if self._sending and self._left > 0:
            self._left -= 1
            conn.send(self._request(conn.index), time.perf_counter_ns())
        else:
            self._finished_one()

    def closed(self, conn: HttpConnection, reason: str, in_flight: bool) -> None:
        if in_flight:
            self._errors[reason] += 1
            self._finished_one()

    def _finished_one(self) -> None:
        self._active -= 1
        if not self._active and self._done is not None and not self._done.done():
            self._done.set_result(None)


class _OpenLoop:
    def __init__(
        self, connections: Sequence[HttpConnection], workload: Workload, rate: float, max_requests: int,
        recorder: LatencyRecorder | None = None,
    ) -> None:
        self._connections = connections
        self._workload = workload
        self._request = workload.request
        self._check = workload.check
        self._rate = rate
        self._max_requests = max_requests
        self._queues: list[deque[int]] = [deque() for _ in connections]
        self._recorder = recorder or LatencyRecorder()
        self._errors: Counter[str] = Counter()
        self._outstanding = 0  # due and not answered: in flight or queued
        self._scheduling = False
        self._window = (0, 0)
        self._ok = 0
        self._total_ok = 0
        self._done: asyncio.Future[None] | None = None

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        self._done = asyncio.get_running_loop().create_future()
        for conn in self._connections:
            conn.owner = self
        connections = self._connections
        n = len(connections)
        clock = OpenLoopClock(self._rate, warmup, duration, self._max_requests)
        self._window = clock.window_ns
        self._scheduling = True
        try:
            async with asyncio.timeout(warmup + duration + drain_timeout):
                await clock.run(lambda k, due: self._dispatch(connections[k % n], due))
                self._scheduling = False
                if self._outstanding:
                    await self._done
        except TimeoutError:
            self._errors[_TIMEOUT] += self._outstanding
        finally:
            self._scheduling = False
            clock.stop()
            for conn in connections:
                conn.owner = UNOWNED
        return LoadResult(
            kind="open-loop",
            connections=n,
            window_s=clock.window_s,
            ok=self._ok,
            datapoints_per_request=self._workload.datapoints_per_request,
            histogram=self._recorder.freeze(),
            errors=dict(self._errors),
            total_ok=self._total_ok,
            cpu_s=clock.cpu_s,
            target_rate=self._rate,
        )

    def _dispatch(self, conn: HttpConnection, due: int) -> None:
        if not conn.open:
            self._errors["connection closed before the request"] += 1
            return
        self._outstanding += 1
        if conn.busy:
            self._queues[conn.index].append(due)
        else:
            conn.send(self._request(conn.index), due)

    def response(self, conn: HttpConnection, status: int, body: bytes) -> None:
        now = time.perf_counter_ns()
        due = conn.started_ns
        error = self._check(conn.index, status, body)
        if error is None:
            self._total_ok += 1
            if self._window[0] <= due < self._window[1]:
                self._ok += 1
                self._recorder.record_ns(now - due)
        else:
            self._errors[error] += 1
        self._outstanding -= 1
        queue = self._queues[conn.index]
        if queue:
            conn.send(self._request(conn.index), queue.popleft())
        elif not self._outstanding and not self._scheduling and self._done is not None and not self._done.done():
            self._done.set_result(None)

    def closed(self, conn: HttpConnection, reason: str, in_flight: bool) -> None:
        queue = self._queues[conn.index]
        lost = len(queue) + (1 if in_flight else 0)
        if lost:
            self._errors[reason] += lost
            self._outstanding -= lost
            queue.clear()
        if not self._outstanding and not self._scheduling and self._done is not None and not self._done.done():
            self._done.set_result(None)


def build_workload(spec: LoadSpec) -> Workload:
    host = f"{spec.host}:{spec.port}"
    match spec.workload:
        case TelemetrySpec() as telemetry:
            return TelemetryWorkload(telemetry, host)
        case ProvisionSpec() as provision:
            return ProvisionWorkload(provision, host)
        case _:
            raise TypeError(f"not an HTTP workload: {type(spec.workload).__name__}")


async def run_spec(
    spec: LoadSpec, ready: Callable[[], Awaitable[None]] | None = None, workload: Workload | None = None,
    recorder: LatencyRecorder | None = None,
) -> LoadResult:
    """Connect, wait for ``ready`` (the start signal), run the load, close.

    ``recorder``: where the measured run's latencies go (default: a new one)."""
    workload = workload or build_workload(spec)
    connecting = time.perf_counter()
    async with asyncio.timeout(_CONNECT_TIMEOUT):
        connections = await connect_all(spec.host, spec.port, spec.connections)
    connect_s = time.perf_counter() - connecting
    try:
        # One request on every connection, all answered, before the clock starts:
        # a connection the client sees as open may still wait in the server's
        # accept queue (uvloop accepts about one connection per loop iteration,
        # so a busy server leaves late ones there for seconds).
        primed = await closed_loop(
            connections, workload, warmup=0, duration=_CONNECT_TIMEOUT, max_requests=len(connections),
            drain_timeout=0,
        )
        if ready is not None:
            await ready()
        if spec.mode == "open":
            if not spec.rate:
                raise ValueError("an open loop needs a rate")
            result = await open_loop(
                connections, workload, rate=spec.rate, warmup=spec.warmup, duration=spec.duration,
                max_requests=spec.max_requests, drain_timeout=spec.drain_timeout, recorder=recorder,
            )
        else:
            result = await closed_loop(
                connections, workload, warmup=spec.warmup, duration=spec.duration,
                max_requests=spec.max_requests, drain_timeout=spec.drain_timeout, recorder=recorder,
            )
    finally:
        close_all(connections)
    if isinstance(recorder, TimelineRecorder):
        result = replace(result, timeline=recorder.timeline())
    return replace(result.with_priming(primed), connect_s=connect_s)
