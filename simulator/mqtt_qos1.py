"""QoS 1 load loops: every message confirmed by its PUBACK, its latency from send (or due) to PUBACK.

Closed loop: every connection keeps ``inflight`` messages unacknowledged (MQTT
devices pipeline); each PUBACK chunk is answered at once by as many new
messages, in one write. Throughput counts the PUBACKs received in the window
after the warm-up.

Open loop: if the connection a message is due on already has ``inflight``
messages unacknowledged, the message waits on it for a free slot, and its
latency still runs from the time it was due (no coordinated omission).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from fleetgate.simulator.mqtt_connection import MqttConnection
from fleetgate.simulator.mqtt_driver import PUBACK_TIMEOUT, ClosedLoopDriver, OpenLoopDriver


class ClosedLoop(ClosedLoopDriver):
    """QoS 1 at maximum rate: ``burst`` messages a connection to start with (at most its
    window), then one new message for every PUBACK."""

    KIND = "closed-loop"
    TIMEOUT_ERROR = PUBACK_TIMEOUT

    def __init__(
        self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int, burst: int | None = None
    ) -> None:
        super().__init__(connections, datapoints, max_messages)
        self._burst = burst

    def _start(self, now: int) -> None:
        for conn in self._connections:
            n = min(conn.free if self._burst is None else min(self._burst, conn.free), self._left)
            if conn.open and n > 0:
                self._left -= n
                self._outstanding += n
                conn.publish(n, now)
        if self._left <= 0:
            self._sending = False

    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        now = time.perf_counter_ns()
        answered = self._answered(started, failures)
        if self._window.measuring:
            self._ok += len(started)
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


class OpenLoop(OpenLoopDriver):
    """QoS 1 at ``rate`` messages a second on a timetable, whatever the server's pace."""

    KIND = "open-loop"
    TIMEOUT_ERROR = PUBACK_TIMEOUT

    def __init__(self, connections: Sequence[MqttConnection], datapoints: int, max_messages: int, rate: float) -> None:
        super().__init__(connections, datapoints, max_messages, rate)
        self._queues: dict[int, deque[int]] = {conn.index: deque() for conn in connections}

    def _send(self, k: int, conn: MqttConnection, due: int) -> None:
        self._outstanding += 1
        queue = self._queues[conn.index]
        if queue or conn.free <= 0:
            queue.append(due)
        else:
            conn.publish(1, due)

    async def _drain(self, timeout: float) -> None:
        assert self._done is not None
        self._check_done()
        await self._done

    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        now = time.perf_counter_ns()
        answered = self._answered(started, failures)
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
