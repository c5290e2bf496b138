"""MQTT load drivers: devices publishing telemetry over their own connections.

The same shape as the HTTP drivers (simulator.http_load): bounded in time and
in count, no task per connection (everything happens in the connections'
callbacks; the open loop's only coroutine walks the timetable), results as
:class:`~simulator.stats.LoadResult` so reports, merging across generator
processes and the bench are shared.

QoS 1, closed loop: every connection keeps ``inflight`` messages unacknowledged
(MQTT devices pipeline); each PUBACK chunk is answered at once by as many new
messages, in one write. Throughput counts the PUBACKs received in the window
after the warm-up; latency runs from send to PUBACK.

QoS 1, open loop: message k is due at ``start + k / rate`` on connection
``k mod n``. If that connection already has ``inflight`` messages
unacknowledged, the message waits on it for a free slot, and its latency still
runs from the time it was due (no coordinated omission).

QoS 0: nothing is acknowledged, but a server answers PINGREQ in order, after
reading everything sent before it. A closed loop writes bursts of ``inflight``
messages, each followed by a PINGREQ, two bursts ahead on every connection, and
counts a burst when its PINGRESP arrives (its latency: write to PINGRESP). An
open loop writes on the timetable and counts what it wrote; at the end every
connection sends PINGREQ and the run waits for the answers, so the server has
read every message counted.

Before any clock starts, every device is connected on a timetable
(``connect_rate``, no CONNECT storm) and, at QoS 1, publishes one message whose
PUBACK is awaited (at QoS 0, a PINGREQ), so the server really serves every
connection; answers still missing after ``drain_timeout`` count as errors.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from simulator.loadspec import LoadSpec
from simulator.mqtt_wire import (
    UNOWNED,
    Device,
    MqttConnection,
    PublishTemplate,
    connect_all,
    disconnect_all,
    reason_name,
)
from simulator.stats import Histogram, LatencyRecorder, LoadResult, MeasurementWindow
from simulator.workloads import MqttTelemetrySpec

_TICK_S = 0.001  # the open loop's shortest wait: uvloop's timers have millisecond resolution
_TIMEOUT = "no PUBACK before the deadline"
_PING_TIMEOUT = "no PINGRESP before the deadline"
_CLOSED_BEFORE = "connection closed before the message"
_CONNECT_TIMEOUT = 30.0


def _failure(code: int) -> str:
    return f"PUBACK refused: {reason_name(code)}"


class _Driver:
    """What every driver shares: counters, errors, the end of the run, the PINGREQ drain."""

    def __init__(self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int) -> None:
        self._connections = connections
        self._datapoints = datapoints
        self._left = max_messages
        self._recorder = LatencyRecorder()
        self._errors: Counter[str] = Counter()
        self._outstanding = 0  # QoS 1: sent or queued, not acknowledged; QoS 0 drain: pings unanswered
        self._pinging: set[int] = set()  # connections whose PINGREQ is not answered yet
        self._sending = False
        self._ok = 0
        self._total_ok = 0
        self._done: asyncio.Future[None] | None = None

    def _own(self) -> None:
        self._done = asyncio.get_running_loop().create_future()
        for conn in self._connections:
            conn.owner = self

    def _release(self) -> None:
        for conn in self._connections:
            conn.owner = UNOWNED

    def _check_done(self) -> None:
        if not self._outstanding and not self._sending and self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _count_failures(self, failures: list[int] | None) -> None:
        if failures:
            for code in failures:
                self._errors[_failure(code)] += 1

    async def _drain_qos0(self, timeout: float) -> None:
        """PINGREQ on every open connection; wait for every PINGRESP (the server has read all before)."""
        self._outstanding = 0
        for conn in self._connections:
            if conn.open:
                self._pinging.add(conn.index)
                conn.ping()
        self._outstanding = len(self._pinging)
        if not self._outstanding:
            return
        assert self._done is not None
        if self._done.done():
            self._done = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._done
        except TimeoutError:
            self._errors[_PING_TIMEOUT] += self._outstanding

    # ConnectionOwner

    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        pass  # only the QoS 1 drivers expect PUBACKs

    def pong(self, conn: MqttConnection) -> None:
        if conn.index in self._pinging:
            self._pinging.discard(conn.index)
            self._outstanding -= 1
            self._check_done()

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        self._errors[reason] += max(1, len(lost))
        self._outstanding -= len(lost)
        if conn.index in self._pinging:
            self._pinging.discard(conn.index)
            self._outstanding -= 1
        self._check_done()

    def _result(self, kind: str, window_s: float, cpu_s: float, target_rate: float | None = None) -> LoadResult:
        return LoadResult(
            kind=kind,
            connections=len(self._connections),
            window_s=window_s,
            ok=self._ok,
            datapoints_per_request=self._datapoints,
            histogram=self._recorder.freeze(),
            errors=dict(self._errors),
            total_ok=self._total_ok,
            cpu_s=cpu_s,
            target_rate=target_rate,
        )


class ClosedLoop(_Driver):
    """QoS 1 at maximum rate: ``burst`` messages a connection to start with (at most its
    window), then one new message for every PUBACK."""

    def __init__(
        self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int, burst: int | None = None
    ) -> None:
        super().__init__(connections, datapoints, max_messages)
        self._burst = burst
        self._window = MeasurementWindow()

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        loop = asyncio.get_running_loop()
        self._own()
        assert self._done is not None
        self._sending = True
        timers = [loop.call_later(warmup + duration, self._close_window)]
        if warmup > 0:
            timers.append(loop.call_later(warmup, self._window.open))
        else:
            self._window.open()
        try:
            now = time.perf_counter_ns()
            for conn in self._connections:
                n = min(conn.free if self._burst is None else min(self._burst, conn.free), self._left)
                if conn.open and n > 0:
                    self._left -= n
                    self._outstanding += n
                    conn.publish(n, now)
            if self._left <= 0:
                self._sending = False
            self._check_done()
            try:
                async with asyncio.timeout(warmup + duration + drain_timeout):
                    await self._done
            except TimeoutError:
                self._errors[_TIMEOUT] += self._outstanding
        finally:
            self._sending = False
            for timer in timers:
                timer.cancel()
            self._close_window()
            self._release()
        return self._result("closed-loop", self._window.seconds, self._window.cpu_s)

    def _close_window(self) -> None:
        self._window.close()
        self._sending = False
        self._check_done()

    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        now = time.perf_counter_ns()
        n = len(started)
        if failures:
            self._count_failures(failures)
            answered = n + len(failures)
        else:
            answered = n
        self._total_ok += n
        if self._window.measuring:
            self._ok += n
            record = self._recorder.record_ns
            for at in started:
                record(now - at)
        self._outstanding -= answered
        if self._sending:
            more = min(answered, self._left, conn.free)
            if more > 0:
                self._left -= more
                self._outstanding += more
                conn.publish(more, time.perf_counter_ns())
            if self._left <= 0:
                self._sending = False
        self._check_done()


class OpenLoop(_Driver):
    """QoS 1 at ``rate`` messages a second on a timetable, whatever the server's pace."""

    def __init__(self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int, rate: float) -> None:
        super().__init__(connections, datapoints, max_messages)
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._queues: dict[int, deque[int]] = {conn.index: deque() for conn in connections}
        self._window_ns = (0, 0)

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        self._own()
        assert self._done is not None
        connections = self._connections
        n = len(connections)
        total = min(math.ceil((warmup + duration) * self._rate), self._left)
        first_in_window = math.ceil(warmup * self._rate)
        start = time.perf_counter_ns()
        self._window_ns = (start + round(warmup * 1e9), start + round((warmup + duration) * 1e9))
        cpu = [time.process_time(), 0.0]
        self._sending = True
        try:
            async with asyncio.timeout(warmup + duration + drain_timeout):
                await _timetable(
                    start, self._rate, total, lambda k, due: self._dispatch(connections[k % n], due),
                    on_index=lambda k: cpu.__setitem__(0, time.process_time()) if k == first_in_window else None,
                )
                cpu[1] = time.process_time()
                self._sending = False
                self._check_done()
                await self._done
        except TimeoutError:
            self._errors[_TIMEOUT] += self._outstanding
        finally:
            self._sending = False
            if not cpu[1]:
                cpu[1] = time.process_time()
            self._release()
        in_window = max(0, total - first_in_window)
        return self._result("open-loop", in_window / self._rate, cpu[1] - cpu[0], self._rate)

    def _dispatch(self, conn: MqttConnection, due: int) -> None:
        if not conn.open:
            self._errors[_CLOSED_BEFORE] += 1
            return
        self._outstanding += 1
        queue = self._queues[conn.index]
        if queue or conn.free <= 0:
            queue.append(due)
        else:
            conn.publish(1, due)

    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        now = time.perf_counter_ns()
        answered = len(started)
        if failures:
            self._count_failures(failures)
            answered += len(failures)
        self._total_ok += len(started)
        low, high = self._window_ns
        record = self._recorder.record_ns
        for due in started:
            if low <= due < high:
                self._ok += 1
                record(now - due)
        self._outstanding -= answered
        queue = self._queues[conn.index]
        if queue:
            take = min(conn.free, len(queue))
            conn.publish_each([queue.popleft() for _ in range(take)])
        self._check_done()

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        queue = self._queues[conn.index]
        lost = lost + list(queue)
        queue.clear()
        super().closed(conn, reason, lost)


class Qos0ClosedLoop(_Driver):
    """QoS 0 at maximum rate, paced by the server: every connection writes ``burst``
    messages and a PINGREQ, ``pipeline`` such bursts ahead; each PINGRESP confirms a
    burst as read by the server (it answers in order) and sends the next one.

    What counts is confirmed, not merely written (kernel buffers on loopback hold
    megabytes), and the histogram holds each burst's time from write to PINGRESP.
    """

    def __init__(
        self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int, burst: int,
        pipeline: int = 2,
    ) -> None:
        super().__init__(connections, datapoints, max_messages)
        self._burst = max(1, burst)
        self._pipeline = max(1, pipeline)
        self._bursts: dict[int, deque[tuple[int, int]]] = {conn.index: deque() for conn in connections}
        self._window = MeasurementWindow()

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        loop = asyncio.get_running_loop()
        self._own()
        assert self._done is not None
        self._sending = True
        timers = [loop.call_later(warmup + duration, self._close_window)]
        if warmup > 0:
            timers.append(loop.call_later(warmup, self._window.open))
        else:
            self._window.open()
        try:
            now = time.perf_counter_ns()
            for conn in self._connections:
                for _ in range(self._pipeline):
                    self._send_burst(conn, now)
            self._check_done()
            try:
                async with asyncio.timeout(warmup + duration + drain_timeout):
                    await self._done
            except TimeoutError:
                self._errors[_PING_TIMEOUT] += self._outstanding
        finally:
            self._sending = False
            for timer in timers:
                timer.cancel()
            self._close_window()
            self._release()
        return self._result("closed-loop qos0", self._window.seconds, self._window.cpu_s)

    def _close_window(self) -> None:
        self._window.close()
        self._sending = False
        self._check_done()

    def _send_burst(self, conn: MqttConnection, now: int) -> None:
        n = min(self._burst, self._left)
        if n <= 0 or not conn.open:
            self._sending = self._left > 0 and self._sending
            return
        self._left -= n
        self._outstanding += 1
        conn.publish(n, now, ping=True)
        self._bursts[conn.index].append((n, now))

    def pong(self, conn: MqttConnection) -> None:
        now = time.perf_counter_ns()
        n, at = self._bursts[conn.index].popleft()
        self._outstanding -= 1
        self._total_ok += n
        if self._window.measuring:
            self._ok += n
            self._recorder.record_ns(now - at)
        if self._sending:
            self._send_burst(conn, now)
        self._check_done()

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        bursts = self._bursts[conn.index]
        self._errors[reason] += max(1, sum(n for n, _ in bursts))
        self._outstanding -= len(bursts)
        bursts.clear()
        self._check_done()


class Pinger(_Driver):
    """PINGREQ on every connection, and the PINGRESPs awaited: QoS 0's priming and drain."""

    async def run(self, timeout: float) -> LoadResult:
        self._own()
        window = MeasurementWindow()
        window.open()
        try:
            await self._drain_qos0(timeout)
        finally:
            window.close()
            self._release()
        self._ok = self._total_ok = len(self._connections) - len(self._pinging)
        return self._result("ping", window.seconds, window.cpu_s)


class IdleHold(_Driver):
    """Idle devices: nothing published, every connection sending PINGREQ twice per keep-alive
    period, spread evenly over it on a timetable. The histogram holds PINGREQ-to-PINGRESP
    times (from when each ping was due); ``ok`` counts the PINGRESPs."""

    def __init__(self, connections: Sequence[MqttConnection], keepalive: int) -> None:
        super().__init__(connections, 0, 0)
        self._period = max(keepalive / 2, 0.5)
        self._due: dict[int, deque[int]] = {conn.index: deque() for conn in connections}

    async def run(self, duration: float, drain_timeout: float) -> LoadResult:
        self._own()
        assert self._done is not None
        connections = self._connections
        n = len(connections)
        rate = n / self._period
        total = math.floor(duration * rate)
        window = MeasurementWindow()
        window.open()

        def ping(k: int, due: int) -> None:
            conn = connections[k % n]
            if conn.open:
                self._outstanding += 1
                self._due[conn.index].append(due)
                conn.ping()

        self._sending = True
        try:
            async with asyncio.timeout(duration + drain_timeout):
                if total:
                    await _timetable(time.perf_counter_ns(), rate, total, ping)
                self._sending = False
                self._check_done()
                await self._done
        except TimeoutError:
            self._errors[_PING_TIMEOUT] += self._outstanding
        finally:
            self._sending = False
            window.close()
            self._release()
        self._total_ok = self._ok
        return self._result("idle", window.seconds, window.cpu_s)

    def pong(self, conn: MqttConnection) -> None:
        due = self._due[conn.index]
        if due:
            self._recorder.record_ns(time.perf_counter_ns() - due.popleft())
            self._ok += 1
            self._outstanding -= 1
            self._check_done()

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        due = self._due[conn.index]
        self._errors[reason] += 1
        self._outstanding -= len(due)
        due.clear()
        self._check_done()


class Qos0OpenLoop(_Driver):
    """QoS 0 at ``rate`` messages a second on a timetable; counts what was sent."""

    def __init__(self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int, rate: float) -> None:
        super().__init__(connections, datapoints, max_messages)
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        self._own()
        connections = self._connections
        n = len(connections)
        total = min(math.ceil((warmup + duration) * self._rate), self._left)
        first_in_window = math.ceil(warmup * self._rate)
        cpu = [time.process_time(), 0.0]

        def send(k: int, due: int) -> None:
            conn = connections[k % n]
            if not conn.open:
                self._errors[_CLOSED_BEFORE] += 1
                return
            conn.publish(1, due)
            self._total_ok += 1
            if k >= first_in_window:
                self._ok += 1

        try:
            async with asyncio.timeout(warmup + duration + drain_timeout):
                await _timetable(
                    time.perf_counter_ns(), self._rate, total, send,
                    on_index=lambda k: cpu.__setitem__(0, time.process_time()) if k == first_in_window else None,
                )
                cpu[1] = time.process_time()
                await self._drain_qos0(drain_timeout)
        except TimeoutError:
            self._errors[_PING_TIMEOUT] += self._outstanding
        finally:
            if not cpu[1]:
                cpu[1] = time.process_time()
            self._release()
        return self._result("open-loop qos0", max(0, total - first_in_window) / self._rate, cpu[1] - cpu[0], self._rate)


async def _timetable(
    start_ns: int, rate: float, total: int, dispatch: Callable[[int, int], None],
    on_index: Callable[[int], None] | None = None,
) -> None:
    """Call ``dispatch(k, due_ns)`` for k in 0..total-1 at ``start + k / rate``, catching up
    at once on what is overdue; ``on_index(k)`` first, for bookkeeping."""
    ns_per_message = 1e9 / rate
    k = 0
    while k < total:
        now = time.perf_counter_ns()
        due = start_ns + round(k * ns_per_message)
        while due <= now:
            if on_index is not None:
                on_index(k)
            dispatch(k, due)
            k += 1
            if k == total:
                return
            due = start_ns + round(k * ns_per_message)
        await asyncio.sleep(max((due - time.perf_counter_ns()) / 1e9, _TICK_S))


def devices_of(spec: MqttTelemetrySpec) -> list[Device]:
    return [Device(f"{spec.client_prefix}{spec.first + i}", token) for i, token in enumerate(spec.tokens)]


def template_of(spec: MqttTelemetrySpec) -> PublishTemplate:
    return PublishTemplate.build(
        spec.topic, spec.body, qos=spec.qos, version=spec.version, timestamp=spec.timestamps
    )


async def run_spec(
    spec: LoadSpec, ready: Callable[[], Awaitable[None]] | None = None,
    held: Callable[[], Awaitable[None]] | None = None,
) -> LoadResult:
    """Connect every device on the ramp, prime, wait for ``ready`` (the start signal), run, disconnect.

    ``mode="idle"``: hold the connections for ``duration`` seconds with keep-alive pings,
    then wait for ``held`` (the server is measured then) before disconnecting."""
    workload = spec.workload
    if not isinstance(workload, MqttTelemetrySpec):
        raise TypeError(f"not an MQTT workload: {type(workload).__name__}")
    datapoints = workload.datapoints
    ramp = len(workload.tokens) / workload.connect_rate
    async with asyncio.timeout(ramp + _CONNECT_TIMEOUT * 2):
        outcome = await connect_all(
            spec.host, spec.port, devices_of(workload), template_of(workload), version=workload.version,
            window=workload.inflight, keepalive=workload.keepalive, rate=workload.connect_rate,
            timeout=_CONNECT_TIMEOUT, source_hosts=workload.source_hosts,
        )
    connections = outcome.connections
    try:
        if not connections:
            primed = _empty(datapoints)
        elif workload.qos == 0 or spec.mode == "idle":
            primed = await Pinger(connections, datapoints, 0).run(spec.drain_timeout)
            primed = replace(primed, total_ok=0)  # no message was sent
        else:
            primer = ClosedLoop(connections, datapoints, len(connections), burst=1)
            primed = await primer.run(0, spec.drain_timeout, 0)
        if ready is not None:
            await ready()
        if spec.mode == "idle":
            result = (
                await IdleHold(connections, workload.keepalive).run(spec.duration, spec.drain_timeout)
                if connections else _empty(datapoints)
            )
            if held is not None:
                await held()
        elif not connections:
            result = _empty(datapoints)
        elif spec.mode == "open":
            if not spec.rate:
                raise ValueError("an open loop needs a rate")
            driver: ClosedLoop | OpenLoop | Qos0ClosedLoop | Qos0OpenLoop = (
                OpenLoop(connections, datapoints, spec.max_requests, spec.rate) if workload.qos
                else Qos0OpenLoop(connections, datapoints, spec.max_requests, spec.rate)
            )
            result = await driver.run(spec.warmup, spec.duration, spec.drain_timeout)
        else:
            driver = (
                ClosedLoop(connections, datapoints, spec.max_requests) if workload.qos
                else Qos0ClosedLoop(connections, datapoints, spec.max_requests, workload.inflight)
            )
            result = await driver.run(spec.warmup, spec.duration, spec.drain_timeout)
    finally:
        disconnect_all(connections)
    return result.with_priming(primed).with_errors(outcome.errors)


def _empty(datapoints: int) -> LoadResult:
    return LoadResult("none", 0, 0.0, 0, datapoints, Histogram())
