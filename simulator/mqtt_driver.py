"""What every MQTT load driver shares, and the two skeletons the load loops fill in.

The same shape as the HTTP drivers (simulator.http_load): bounded in time and
in count, no task per connection (everything happens in the connections'
callbacks; the open loop's only coroutine walks the timetable), results as
:class:`~simulator.stats.LoadResult` so reports, merging across generator
processes and the bench are shared.

A closed loop runs at the server's pace and measures a window opened after
the warm-up; an open loop sends on a timetable (simulator.timetable) and its
window holds what was due after the warm-up. QoS 1 (simulator.mqtt_qos1) and
QoS 0 (simulator.mqtt_qos0) differ only in what they send and what confirms it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from fleetgate.simulator.mqtt_connection import UNOWNED, MqttConnection
from fleetgate.simulator.mqtt_packets import reason_name
from fleetgate.simulator.stats import LatencyRecorder, LoadResult, MeasurementWindow
from fleetgate.simulator.timetable import OpenLoopClock

PUBACK_TIMEOUT = "no PUBACK before the deadline"
PING_TIMEOUT = "no PINGRESP before the deadline"
_CLOSED_BEFORE = "connection closed before the message"


class Driver:
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

    def use_recorder(self, recorder: LatencyRecorder) -> None:
        """Record latencies into ``recorder`` (a timeline, read live by a progress display)."""
        self._recorder = recorder

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

    def _answered(self, started: list[int], failures: list[int] | None) -> int:
        """A chunk of PUBACKs counted: the accepted in ``total_ok``, the refused as errors by
        reason; how many messages they answer."""
        self._total_ok += len(started)
        if not failures:
            return len(started)
        for code in failures:
            self._errors[f"PUBACK refused: {reason_name(code)}"] += 1
        return len(started) + len(failures)

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
            self._errors[PING_TIMEOUT] += self._outstanding

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


class ClosedLoopDriver(Driver):
    """At the server's pace: :meth:`_start` sends the first messages, the connections'
    callbacks the rest, until the window ends or the messages run out."""

    KIND: ClassVar[str]
    TIMEOUT_ERROR: ClassVar[str]  # counted once for each answer still missing at the deadline

    def __init__(self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int) -> None:
        super().__init__(connections, datapoints, max_messages)
        self._window = MeasurementWindow()

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        self._own()
        assert self._done is not None
        self._sending = True
        timers = self._window.schedule(warmup, duration, self._close_window)
        try:
            self._start(time.perf_counter_ns())
            self._check_done()
            try:
                async with asyncio.timeout(warmup + duration + drain_timeout):
                    await self._done
            except TimeoutError:
                self._errors[self.TIMEOUT_ERROR] += self._outstanding
        finally:
            self._sending = False
            for timer in timers:
                timer.cancel()
            self._close_window()
            self._release()
        return self._result(self.KIND, self._window.seconds, self._window.cpu_s)

    def _start(self, now: int) -> None:
        raise NotImplementedError

    def _close_window(self) -> None:
        self._window.close()
        self._sending = False
        self._check_done()


class OpenLoopDriver(Driver):
    """At ``rate`` messages a second: message k is due at ``start + k / rate`` on connection
    ``k mod n`` and handed to :meth:`_send`, then :meth:`_drain` waits for what confirms them."""

    KIND: ClassVar[str]
    TIMEOUT_ERROR: ClassVar[str]

    def __init__(self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int, rate: float) -> None:
        super().__init__(connections, datapoints, max_messages)
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._window_ns = (0, 0)  # due times measured
        self._first_in_window = 0  # the index of the first message measured

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        self._own()
        connections = self._connections
        n = len(connections)
        clock = OpenLoopClock(self._rate, warmup, duration, self._left)
        self._window_ns = clock.window_ns
        self._first_in_window = clock.first_in_window
        self._sending = True
        try:
            async with asyncio.timeout(warmup + duration + drain_timeout):
                await clock.run(lambda k, due: self._dispatch(k, connections[k % n], due))
                self._sending = False
                await self._drain(drain_timeout)
        except TimeoutError:
            self._errors[self.TIMEOUT_ERROR] += self._outstanding
        finally:
            self._sending = False
            clock.stop()
            self._release()
        return self._result(self.KIND, clock.window_s, clock.cpu_s, self._rate)

    def _dispatch(self, k: int, conn: MqttConnection, due: int) -> None:
        if not conn.open:
            self._errors[_CLOSED_BEFORE] += 1
            return
        self._send(k, conn, due)

    def _send(self, k: int, conn: MqttConnection, due: int) -> None:
        raise NotImplementedError

    async def _drain(self, timeout: float) -> None:
        raise NotImplementedError
