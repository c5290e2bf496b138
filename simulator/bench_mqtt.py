"""The bench's MQTT telemetry scenario, against mosquitto.

mqtt
    The gateway with its MQTT listener on (it must print an ``mqtt: URL``
    line), ``--devices`` devices provisioned over HTTP, each then connecting
    over MQTT with its access token as user name and publishing 3-data-point
    telemetry to v1/devices/me/telemetry at ``--qos`` (1), ``--inflight``
    messages unacknowledged at a time: a closed loop for the maximum rate, an
    open loop at ``--rate`` (default half that) for PUBACK latency. The same
    runs then go against mosquitto (simulator.mosquitto), and the table shows
    the ratio. Without ``--rate``, open loops at a quarter and at half of the
    maximum, each against mosquitto at the same rate, then the open-loop
    capacity (simulator.open_loop). ``--target mosquitto`` measures mosquitto
    alone (no gateway, no database): the generator's own check.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    NO_MOSQUITTO,
    BenchError,
    Tenant,
    Workspace,
    acknowledged_datapoints,
    context,
    gateway_server,
    head_to_head,
    made_up_tokens,
    measure,
    mosquitto_server,
    new_tenant,
    notes,
    provision_devices,
    stored_rows,
)
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.machine_probe import Floor, floor_notes, probed
from fleetgate.simulator.mosquitto import mosquitto_path
from fleetgate.simulator.mqtt_packets import VERSIONS
from fleetgate.simulator.open_loop import OpenRun, capacity, capacity_target, p99_target
from fleetgate.simulator.processes import RunningServer
from fleetgate.simulator.report import BenchReport, Ratio, Run, Target
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.workloads import MqttTelemetrySpec

# The figures for MQTT (1,000 devices, QoS 1, stored acknowledgements), the p99s in an
# open loop at a quarter and at half of the closed-loop maximum of the same run.
TARGET_MQTT_MESSAGES_PER_S = 50_000
TARGET_MQTT_P99_QUARTER_MS = 15.0
TARGET_MQTT_P99_HALF_MS = 25.0


def mqtt_workload(options: BenchOptions, tokens: tuple[str, ...]) -> MqttTelemetrySpec:
    return MqttTelemetrySpec(
        tokens, qos=options.qos, inflight=options.inflight, version=VERSIONS[options.mqtt_version],
        connect_rate=options.connect_rate, timestamps=options.timestamps,
        client_prefix=f"bench-{secrets.token_hex(3)}-",
    )


@dataclass(frozen=True, slots=True)
class MqttFleet:
    """A scenario's starting point: a tenant, the gateway, its devices and the closed loop over them."""

    tenant: Tenant
    gateway: RunningServer
    tokens: tuple[str, ...]
    spec: LoadSpec


@contextlib.asynccontextmanager
async def mqtt_fleet(
    space: Workspace, options: BenchOptions, *, duration: float | None = None, listeners: tuple[str, ...] = (),
    **settings: Any,
) -> AsyncIterator[MqttFleet]:
    """A new tenant, the gateway with its MQTT listener (and ``listeners``, ``settings``), the
    ``--devices`` devices provisioned, and a closed loop of ``duration`` (``--duration``) over them."""
    tenant = await new_tenant(space)
    async with gateway_server(space, mqtt=True, listeners=listeners, **settings) as gateway:
        tokens = await provision_devices(gateway, tenant, options.devices)
        spec = _spec(gateway, tokens, options)
        yield MqttFleet(tenant, gateway, tokens, spec if duration is None else replace(spec, duration=duration))


def _spec(server: RunningServer, tokens: tuple[str, ...], options: BenchOptions) -> LoadSpec:
    host, port = server.endpoint("mqtt")
    return LoadSpec(
        host, port, mqtt_workload(options, tokens), connections=len(tokens), warmup=options.warmup,
        duration=options.duration, max_requests=options.max_messages,
    )


async def _open(name: str, spec: LoadSpec, options: BenchOptions, rate: float, server: RunningServer) -> LoadResult:
    return await measure(f"{name}, {rate:,.0f}/s", replace(spec, mode="open", rate=rate), options, unit="messages",
                         server=server)


async def _pair(
    name: str, server: RunningServer, tokens: tuple[str, ...], options: BenchOptions, rate: float | None
) -> tuple[LoadResult, LoadResult, float]:
    """A closed loop, then an open loop at ``rate`` (default: half the closed loop's), on one server."""
    spec = _spec(server, tokens, options)
    maximum = await measure(f"{name}, closed loop", spec, options, unit="messages", server=server)
    rate = rate or maximum.requests_per_s / 2
    if rate <= 0:
        raise BenchError(f"{name} acknowledged no message: {dict(maximum.errors)}")
    return maximum, await _open(name, spec, options, rate, server), rate


async def _gateway_runs(
    gateway: RunningServer, tokens: tuple[str, ...], options: BenchOptions, space: Workspace,
    floors: dict[float, Floor],
) -> tuple[LoadResult, list[OpenRun], OpenRun | None]:
    """The closed loop; open loops at a quarter and half of its maximum (or at --rate alone); with
    no --rate, the open-loop capacity searched for in a few more runs. ``floors``: what the
    machine gave each open loop, by rate (simulator.machine_probe)."""
    spec = _spec(gateway, tokens, options)
    maximum = await measure("gateway, closed loop", spec, options, unit="messages", server=gateway)
    top = maximum.requests_per_s
    if top <= 0:
        raise BenchError(f"gateway acknowledged no message: {dict(maximum.errors)}")

    async def run(name: str, rate: float) -> LoadResult:
        result, floors[rate] = await probed(space.root, _open(name, spec, options, rate, gateway))
        return result

    if options.rate is not None:
        return maximum, [OpenRun(options.rate / top, options.rate, await run("gateway", options.rate))], None
    measured = [OpenRun(share, top * share, await run("gateway", top * share)) for share in (0.25, 0.5)]
    best, extra = await capacity(top, measured, lambda rate: run("gateway, capacity", rate))
    return maximum, [*measured, *extra], best


def _title(options: BenchOptions, what: str) -> str:
    return (
        f"iot-gateway bench mqtt: {what}, {options.devices} devices, one MQTT {options.mqtt_version} connection each, "
        f"QoS {options.qos}, {options.inflight} in flight a connection, 3 data points a message, "
        f"{options.duration:g} s after {options.warmup:g} s warm-up"
    )


async def mqtt(options: BenchOptions, space: Workspace) -> BenchReport:
    if options.target == "mosquitto":
        return await _mosquitto_alone(options, space)
    tenant = await new_tenant(space)
    async with gateway_server(space, mqtt=True) as gateway:
        tokens = await provision_devices(gateway, tenant, options.devices)
        floors: dict[float, Floor] = {}
        gateway_max, gateway_open, best = await _gateway_runs(gateway, tokens, options, space, floors)
    half = options.rate is None
    # The table's open loops: a quarter and half of the maximum (or --rate), each also against mosquitto.
    table = gateway_open[:2] if half else gateway_open[:1]
    gateway_rate = table[-1].result
    rate = table[-1].rate
    baseline: tuple[LoadResult, LoadResult] | None = None
    baseline_open: list[LoadResult] = []
    if mosquitto_path() is not None:
        async with mosquitto_server(space) as broker:
            spec = _spec(broker, tokens, options)
            baseline_max = await measure("mosquitto, closed loop", spec, options, unit="messages", server=broker)
            baseline_open = [await _open("mosquitto", spec, options, run.rate, broker) for run in table]
            baseline = (baseline_max, baseline_open[-1])
    stored = await stored_rows(space, tenant)
    acknowledged = acknowledged_datapoints(gateway_max, *(run.result for run in gateway_open))
    # ts_kv's key is (device, key, ts); the gateway stamps a device's readings that carry no ts
    # with strictly increasing milliseconds, so every acknowledged data point is its own row.
    exact = options.qos == 1 and space.settings.ack == "stored"
    runs = [Run("gateway_max", "gateway, max throughput", gateway_max)]
    if baseline is not None:
        runs.append(Run("baseline_max", "mosquitto, max throughput", baseline[0]))
    for n, run in enumerate(table):
        name, what = ("rate", "half the maximum" if half else "--rate") if n == len(table) - 1 else (
            "quarter", "a quarter of the maximum")
        runs.append(Run(f"gateway_{name}", f"gateway at {run.rate:,.0f}/s ({what})", run.result))
        if baseline_open:
            runs.append(Run(f"baseline_{name}", f"mosquitto at {run.rate:,.0f}/s", baseline_open[n]))
    for n, run in enumerate(gateway_open[len(table):]):
        runs.append(Run(f"gateway_capacity_{n + 1}", f"gateway at {run.rate:,.0f}/s ({run.share:.1%}: capacity "
                        "search)", run.result))
    ratios: tuple[Ratio, ...] = ()
    report_notes: list[str] = []
    if baseline is not None:
        ratios = head_to_head("mosquitto", gateway_max, gateway_rate, *baseline, item="message")
    else:
        report_notes.append(NO_MOSQUITTO)
    for run in gateway_open:
        report_notes += floor_notes(run.rate, floors.get(run.rate))
    if not exact:
        report_notes.append("rows in ts_kv are only checked to be no more than the data points sent: with QoS 0 or "
                            "ack = accepted nothing says which messages were stored")
    targets: list[Target] = []
    if options.qos == 1:
        targets.append(Target(
            "throughput", f">= {TARGET_MQTT_MESSAGES_PER_S:,} messages/s",
            f"{gateway_max.requests_per_s:,.0f}", gateway_max.requests_per_s >= TARGET_MQTT_MESSAGES_PER_S,
        ))
        if half:
            quarter = baseline_open[0] if baseline_open else None
            at_half = baseline_open[-1] if baseline_open else None
            targets += [
                p99_target("latency at a quarter", TARGET_MQTT_P99_QUARTER_MS, 0.25, table[0].result, quarter,
                           "mosquitto", floors.get(table[0].rate)),
                p99_target("latency at half", TARGET_MQTT_P99_HALF_MS, 0.5, gateway_rate, at_half, "mosquitto",
                           floors.get(rate)),
                capacity_target(gateway_max.requests_per_s, best, "messages"),
            ]
    results = tuple(run.result for run in runs)
    return BenchReport(
        scenario="mqtt",
        title=_title(options, f"ack={space.settings.ack}"),
        context=context(options, space, rate=rate),
        runs=tuple(runs),
        ratios=ratios,
        targets=tuple(targets),
        checks={
            "data points acknowledged": acknowledged,
            "rows in ts_kv": stored,
            "rows verified": stored == acknowledged if exact else 0 < stored <= acknowledged,
        },
        notes=(*report_notes, *notes(results)),
        unit="messages",
    )


async def _mosquitto_alone(options: BenchOptions, space: Workspace) -> BenchReport:
    """The generator against mosquitto alone: no gateway, no database, made-up tokens."""
    async with mosquitto_server(space) as broker:
        maximum, at_rate, rate = await _pair("mosquitto", broker, made_up_tokens(options.devices), options, options.rate)
    return BenchReport(
        scenario="mqtt",
        title=_title(options, "mosquitto alone"),
        context=context(options, space, rate=rate),
        runs=(
            Run("baseline_max", "mosquitto, max throughput", maximum),
            Run("baseline_rate", f"mosquitto at {rate:,.0f}/s", at_rate),
        ),
        notes=notes((maximum, at_rate)),
        unit="messages",
    )
