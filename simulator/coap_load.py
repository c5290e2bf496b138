"""CoAP load: devices posting confirmable telemetry, one load spec run (the sockets and
exchanges are simulator.coap_driver's).

Latency runs from send (closed loop) or due time (open loop) to the response,
piggybacked or separate. Closed loop: every device keeps ``inflight`` requests
unanswered, sending the next when one is answered. Open loop: request k is due
at ``start + k / rate`` on device ``k mod n``, queued on the device while it has
``inflight`` unanswered (latency still from the due time). Both bounded in count
and time; no task per device: everything runs in the sockets' callbacks and
timers. Before any clock starts every device sends one request and gets its
answer. Requests still unanswered at the deadline are errors.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace

from fleetgate.simulator.coap_driver import CoapDriver
from fleetgate.simulator.coap_packets import CoapTelemetrySpec
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.stats import Histogram, LatencyRecorder, LoadResult, MeasurementWindow
from fleetgate.simulator.timeline import TimelineRecorder
from fleetgate.simulator.timetable import OpenLoopClock

TIMEOUT = "no response before the deadline"
_SETUP_TIMEOUT = 60.0


class _Loop:
    """What the closed and open loops share: counting answers, ending the run."""

    KIND = ""

    def __init__(
        self, driver: CoapDriver, datapoints: int, max_requests: int, inflight: int,
        recorder: LatencyRecorder | None = None,
    ) -> None:
        self._driver = driver
        self._datapoints = datapoints
        self._left = max_requests
        self._inflight = inflight
        self._busy = [0] * driver.devices  # unanswered requests of each device
        self._recorder = recorder if recorder is not None else LatencyRecorder()
        self._ok = 0
        self._total_ok = 0
        self._outstanding = 0
        self._sending = False
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        driver.on_answer = self._answer
        driver.errors = Counter()  # this loop's

    def _send(self, device: int, started: int) -> None:
        self._busy[device] += 1
        self._outstanding += 1
        self._driver.send(device, started)

    def _answer(self, device: int, started: int, ok: bool) -> None:
        raise NotImplementedError

    def _check_done(self) -> None:
        if not self._outstanding and not self._sending and not self._done.done():
            self._done.set_result(None)

    async def _wait(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._done
        except TimeoutError:
            pass
        left = self._driver.abandon()
        if left:
            self._driver.errors[TIMEOUT] += left

    def _result(self, window_s: float, cpu_s: float, rate: float | None = None) -> LoadResult:
        return LoadResult(
            kind=self.KIND, connections=len(self._driver.sockets), window_s=window_s, ok=self._ok,
            datapoints_per_request=self._datapoints, histogram=self._recorder.freeze(),
            errors=dict(self._driver.errors), total_ok=self._total_ok, cpu_s=cpu_s, target_rate=rate,
        )


class ClosedLoop(_Loop):
    KIND = "closed-loop"

    def __init__(
        self, driver: CoapDriver, datapoints: int, max_requests: int, inflight: int,
        recorder: LatencyRecorder | None = None,
    ) -> None:
        super().__init__(driver, datapoints, max_requests, inflight, recorder)
        self._window = MeasurementWindow()

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        self._sending = True
        timers = self._window.schedule(warmup, duration, self._close_window)
        try:
            now = time.perf_counter_ns()
            for _ in range(self._inflight):
                for device in range(self._driver.devices):
                    if self._left <= 0:
                        break
                    self._left -= 1
                    self._send(device, now)
            if self._left <= 0:
                self._sending = False
            self._check_done()
            await self._wait(warmup + duration + drain_timeout)
        finally:
            self._sending = False
            for timer in timers:
                timer.cancel()
            self._window.close()
        return self._result(self._window.seconds, self._window.cpu_s)

    def _close_window(self) -> None:
        self._window.close()
        self._sending = False
        self._check_done()

    def _answer(self, device: int, started: int, ok: bool) -> None:
        now = time.perf_counter_ns()
        self._busy[device] -= 1
        self._outstanding -= 1
        if ok:
            self._total_ok += 1
            if self._window.measuring:
                self._ok += 1
                self._recorder.record_ns(now - started)
        if self._sending and self._left > 0:
            self._left -= 1
            self._send(device, now)
        elif self._left <= 0:
            self._sending = False
        self._check_done()


class OpenLoop(_Loop):
    KIND = "open-loop"

    def __init__(
        self, driver: CoapDriver, datapoints: int, max_requests: int, inflight: int, rate: float,
        recorder: LatencyRecorder | None = None,
    ) -> None:
        super().__init__(driver, datapoints, max_requests, inflight, recorder)
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._queues: list[deque[int]] = [deque() for _ in range(driver.devices)]
        self._window_ns = (0, 0)

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        clock = OpenLoopClock(self._rate, warmup, duration, self._left)
        self._window_ns = clock.window_ns
        n = self._driver.devices
        self._sending = True
        try:
            async with asyncio.timeout(warmup + duration + drain_timeout):
                await clock.run(lambda k, due: self._due(k % n, due))
        except TimeoutError:
            pass
        finally:
            self._sending = False
            clock.stop()
        self._check_done()
        await self._wait(drain_timeout)
        return self._result(clock.window_s, clock.cpu_s, self._rate)

    def _due(self, device: int, due: int) -> None:
        if self._busy[device] >= self._inflight:
            self._outstanding += 1
            self._queues[device].append(due)
        else:
            self._send(device, due)

    def _answer(self, device: int, started: int, ok: bool) -> None:
        now = time.perf_counter_ns()
        self._busy[device] -= 1
        self._outstanding -= 1
        if ok:
            self._total_ok += 1
            if self._window_ns[0] <= started < self._window_ns[1]:
                self._ok += 1
                self._recorder.record_ns(now - started)
        queue = self._queues[device]
        if queue:
            self._outstanding -= 1  # counted again by _send
            self._send(device, queue.popleft())
        self._check_done()

    async def _wait(self, timeout: float) -> None:
        await super()._wait(timeout)
        queued = sum(len(queue) for queue in self._queues)
        if queued:
            self._driver.errors[TIMEOUT] += queued


async def run_spec(
    spec: LoadSpec, ready: Callable[[], Awaitable[None]] | None = None, recorder: LatencyRecorder | None = None,
) -> LoadResult:
    """Open the sockets, prime every device, wait for ``ready`` (the start signal), run, close.
    ``recorder``: where the measured run's latencies go (a timeline for ``simulate``)."""
    workload = spec.workload
    if not isinstance(workload, CoapTelemetrySpec):
        raise TypeError(f"not a CoAP workload: {type(workload).__name__}")
    datapoints = workload.datapoints
    if not workload.tokens:
        return LoadResult("none", 0, 0.0, 0, datapoints, Histogram())
    driver = CoapDriver(workload)
    try:
        async with asyncio.timeout(_SETUP_TIMEOUT):
            await driver.open(spec.host, spec.port)
        primed = await ClosedLoop(driver, datapoints, len(workload.tokens), 1).run(0, _SETUP_TIMEOUT, 0)
        primed_retransmissions = driver.retransmissions
        if ready is not None:
            await ready()
        if spec.mode == "open":
            if not spec.rate:
                raise ValueError("an open loop needs a rate")
            loop: ClosedLoop | OpenLoop = OpenLoop(
                driver, datapoints, spec.max_requests, workload.inflight, spec.rate, recorder)
        else:
            loop = ClosedLoop(driver, datapoints, spec.max_requests, workload.inflight, recorder)
        result = await loop.run(spec.warmup, spec.duration, spec.drain_timeout)
        retransmitted = driver.retransmissions - primed_retransmissions
        if retransmitted:
            print(f"coap load: {retransmitted} retransmissions", file=sys.stderr, flush=True)
    finally:
        driver.close()
    if isinstance(recorder, TimelineRecorder):
        result = replace(result, timeline=recorder.timeline())
    return result.with_priming(primed)
