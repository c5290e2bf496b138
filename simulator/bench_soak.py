"""The bench's soak scenario: hours of steady MQTT telemetry, the gateway's memory watched.

soak
    The gateway with its MQTT listener, ``--devices`` devices provisioned over
    HTTP. Unless ``--rate`` is given, a 10-second closed loop measures the
    maximum, and the soak runs an open loop at half of it for ``--duration``
    seconds (issue 6: 1,800). The gateway's resident memory (VmRSS of the
    supervisor and its workers) is read every ``--duration`` / 30 seconds; the
    reference is the reading after the first sixth of the soak (5 minutes of
    30), and the soak passes when the last reading is within 10% of it and
    every acknowledged data point is a row in ts_kv.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from fleetgate.simulator.bench_mqtt import mqtt_fleet
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    BenchError,
    Workspace,
    acknowledged_datapoints,
    context,
    measure,
    notes,
    progress,
    stored_rows,
)
from fleetgate.simulator.processes import tree_resident_kib
from fleetgate.simulator.report import BenchReport, Run, Target

TARGET_RSS_GROWTH = 0.10  # issue 6: the end within 10% of the reading after the first 5 minutes of 30
_MAXIMUM_PROBE_S = 10.0
_READINGS = 30
_SETTLED_SHARE = 1 / 6


@dataclass(frozen=True, slots=True)
class MemoryTrace:
    """(seconds since the soak began, KiB) readings of the gateway's resident memory."""

    readings: tuple[tuple[float, int], ...]
    settled_at_s: float

    @property
    def settled_kib(self) -> int:
        return next((kib for at, kib in self.readings if at >= self.settled_at_s), self.readings[-1][1])

    @property
    def end_kib(self) -> int:
        return self.readings[-1][1]

    @property
    def growth(self) -> float:
        return self.end_kib / self.settled_kib - 1 if self.settled_kib else 0.0


class _Sampler:
    """Reads the gateway's RSS at fixed times while the soak runs; owned by the soak, which cancels it."""

    def __init__(self, pid: int, every_s: float) -> None:
        self._pid = pid
        self._every_s = every_s
        self._started = time.monotonic()
        self.readings: list[tuple[float, int]] = []

    def read(self) -> None:
        self.readings.append((round(time.monotonic() - self._started, 1), tree_resident_kib(self._pid)))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)  # a reading on a timetable, not a wait for an event
            self.read()


async def soak(options: BenchOptions, space: Workspace) -> BenchReport:
    async with mqtt_fleet(space, options, duration=_MAXIMUM_PROBE_S) as fleet:
        tenant, gateway, tokens, spec = fleet.tenant, fleet.gateway, fleet.tokens, fleet.spec
        runs: list[Run] = []
        rate = options.rate
        if rate is None:
            maximum = await measure("gateway, closed loop", spec, options, unit="messages")
            runs.append(Run("gateway_max", "gateway, max throughput", maximum))
            rate = maximum.requests_per_s / 2
            if rate <= 0:
                raise BenchError(f"the gateway acknowledged no message: {dict(maximum.errors)}")
        steady = replace(spec, mode="open", rate=rate, warmup=0, duration=options.duration,
                         max_requests=int(rate * options.duration) + len(tokens))
        sampler = _Sampler(gateway.pid, options.duration / _READINGS)
        sampler.read()
        reading = asyncio.create_task(sampler.run())
        try:
            at_rate = await measure(f"soak at {rate:,.0f}/s", steady, options, unit="messages")
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        sampler.read()
        runs.append(Run("soak", f"gateway, {options.duration:g} s at {rate:,.0f}/s", at_rate))
    stored = await stored_rows(space, tenant)
    trace = MemoryTrace(tuple(sampler.readings), options.duration * _SETTLED_SHARE)
    progress(f"RSS {trace.settled_kib:,} KiB after {trace.settled_at_s:g} s, {trace.end_kib:,} KiB at the end "
             f"({trace.growth:+.1%})")
    acknowledged = acknowledged_datapoints(*(run.result for run in runs))
    return BenchReport(
        scenario="soak",
        title=(f"iot-gateway bench soak: {options.devices} devices, MQTT {options.mqtt_version}, QoS {options.qos}, "
               f"3 data points a message, {options.duration:g} s at {rate:,.0f} messages/s"),
        context=context(options, space, rate=rate, rss_kib=trace.readings),
        runs=tuple(runs),
        targets=(Target(
            "memory", f"RSS at the end within {TARGET_RSS_GROWTH:.0%} of RSS after {trace.settled_at_s:g} s",
            f"{trace.settled_kib // 1024:,} -> {trace.end_kib // 1024:,} MiB ({trace.growth:+.1%})",
            abs(trace.growth) <= TARGET_RSS_GROWTH,
        ),),
        checks={
            "RSS KiB at the start": trace.readings[0][1],
            "RSS KiB, reference": trace.settled_kib,
            "RSS KiB, highest": max(kib for _, kib in trace.readings),
            "RSS KiB at the end": trace.end_kib,
            "data points acknowledged": acknowledged,
            "rows in ts_kv": stored,
            "rows verified": stored == acknowledged,
        },
        notes=notes(tuple(run.result for run in runs)),
        unit="messages",
    )
