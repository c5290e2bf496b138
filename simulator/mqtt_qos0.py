"""QoS 0 load loops: nothing is acknowledged, so PINGREQ stands in for the acknowledgement.

A server answers PINGREQ in order, after reading everything sent before it. The
closed loop writes bursts of ``inflight`` messages, each followed by a
PINGREQ, two bursts ahead on every connection, and counts a burst when its
PINGRESP arrives (its latency: write to PINGRESP). The open loop writes on the
timetable and counts what it wrote; at the end every connection sends PINGREQ
and the run waits for the answers, so the server has read every message counted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from fleetgate.simulator.mqtt_connection import MqttConnection
from fleetgate.simulator.mqtt_driver import PING_TIMEOUT, ClosedLoopDriver, OpenLoopDriver


class Qos0ClosedLoop(ClosedLoopDriver):
    """QoS 0 at maximum rate, paced by the server: every connection writes ``burst``
    messages and a PINGREQ, ``pipeline`` such bursts ahead; each PINGRESP confirms a
    burst as read by the server (it answers in order) and sends the next one.

    What counts is confirmed, not merely written (kernel buffers on loopback hold
    megabytes), and the histogram holds each burst's time from write to PINGRESP.
    """

    KIND = "closed-loop qos0"
    TIMEOUT_ERROR = PING_TIMEOUT

    def __init__(
        self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int, burst: int,
        pipeline: int = 2,
    ) -> None:
        super().__init__(connections, datapoints, max_messages)
        self._burst = max(1, burst)
        self._pipeline = max(1, pipeline)
        self._bursts: dict[int, deque[tuple[int, int]]] = {conn.index: deque() for conn in connections}

    def _start(self, now: int) -> None:
        for conn in self._connections:
            for _ in range(self._pipeline):
                self._send_burst(conn, now)

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


class Qos0OpenLoop(OpenLoopDriver):
    """QoS 0 at ``rate`` messages a second on a timetable; counts what was sent."""

    KIND = "open-loop qos0"
    TIMEOUT_ERROR = PING_TIMEOUT

    def _send(self, k: int, conn: MqttConnection, due: int) -> None:
        conn.publish(1, due)
        self._total_ok += 1
        if k >= self._first_in_window:
            self._ok += 1

    async def _drain(self, timeout: float) -> None:
        await self._drain_qos0(timeout)
