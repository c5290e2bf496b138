"""Drivers that only ping: QoS 0's priming and drain, and idle devices kept alive."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Sequence

from fleetgate.simulator.mqtt_connection import MqttConnection
from fleetgate.simulator.mqtt_driver import PING_TIMEOUT, Driver
from fleetgate.simulator.stats import LoadResult, MeasurementWindow
from fleetgate.simulator.timetable import timetable


class Pinger(Driver):
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


class IdleHold(Driver):
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
                    await timetable(time.perf_counter_ns(), rate, total, ping)
                self._sending = False
                self._check_done()
                await self._done
        except TimeoutError:
            self._errors[PING_TIMEOUT] += self._outstanding
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
