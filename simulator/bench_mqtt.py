"""The bench's MQTT telemetry scenario, against mosquitto.

mqtt
    The gateway with its MQTT listener on (it must print an ``mqtt: URL``
    line), ``--devices`` devices provisioned over HTTP, each then connecting
    over MQTT with its access token as user name and publishing 3-data-point
    telemetry to v1/devices/me/telemetry at ``--qos`` (1), ``--inflight``
    messages unacknowledged at a time: a closed loop for the maximum rate, an
    open loop at ``--rate`` (default half that) for PUBACK latency. The same
    runs then go against mosquitto (simulator.mosquitto), and the table shows
    the ratio. ``--target mosquitto`` measures mosquitto alone (no gateway, no
    database): the generator's own check.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    NO_MOSQUITTO,
    BenchError,
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
from fleetgate.simulator.mosquitto import mosquitto_path
from fleetgate.simulator.mqtt_packets import VERSIONS
from fleetgate.simulator.processes import RunningServer
from fleetgate.simulator.report import BenchReport, Ratio, Run, Target
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.workloads import MqttTelemetrySpec

# The figures for MQTT (1,000 devices, QoS 1, stored acknowledgements).
TARGET_MQTT_MESSAGES_PER_S = 50_000
TARGET_MQTT_P99_MS = 100.0


def mqtt_workload(options: BenchOptions, tokens: tuple[str, ...]) -> MqttTelemetrySpec:
    return MqttTelemetrySpec(
        tokens, qos=options.qos, inflight=options.inflight, version=VERSIONS[options.mqtt_version],
        connect_rate=options.connect_rate, timestamps=options.timestamps,
        client_prefix=f"bench-{secrets.token_hex(3)}-",
    )


async def _pair(
    name: str, server: RunningServer, tokens: tuple[str, ...], options: BenchOptions, rate: float | None
) -> tuple[LoadResult, LoadResult, float]:
    """A closed loop, then an open loop at ``rate`` (default: half the closed loop's), on one server."""
    host, port = server.endpoint("mqtt")
    spec = LoadSpec(
        host, port, mqtt_workload(options, tokens), connections=len(tokens), warmup=options.warmup,
        duration=options.duration, max_requests=options.max_messages,
    )
    maximum = await measure(f"{name}, closed loop", spec, options, unit="messages")
    rate = rate or maximum.requests_per_s / 2
    if rate <= 0:
        raise BenchError(f"{name} acknowledged no message: {dict(maximum.errors)}")
    at_rate = await measure(f"{name}, {rate:,.0f}/s", replace(spec, mode="open", rate=rate), options, unit="messages")
    return maximum, at_rate, rate


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
        gateway_max, gateway_rate, rate = await _pair("gateway", gateway, tokens, options, options.rate)
    baseline: tuple[LoadResult, LoadResult] | None = None
    if mosquitto_path() is not None:
        async with mosquitto_server(space) as broker:
            baseline_max, baseline_rate, _ = await _pair("mosquitto", broker, tokens, options, rate)
            baseline = (baseline_max, baseline_rate)
    stored = await stored_rows(space, tenant)
    acknowledged = acknowledged_datapoints(gateway_max, gateway_rate)
    # ts_kv's key is (device, key, ts); the gateway stamps a device's readings that carry no ts
    # with strictly increasing milliseconds, so every acknowledged data point is its own row.
    exact = options.qos == 1 and space.settings.ack == "stored"
    half = options.rate is None
    runs = [
        Run("gateway_max", "gateway, max throughput", gateway_max),
        Run("gateway_rate", f"gateway at {rate:,.0f}/s ({'half the maximum' if half else '--rate'})", gateway_rate),
    ]
    ratios: tuple[Ratio, ...] = ()
    report_notes: list[str] = []
    if baseline is not None:
        baseline_max, baseline_rate = baseline
        runs[1:1] = [Run("baseline_max", "mosquitto, max throughput", baseline_max)]
        runs.append(Run("baseline_rate", f"mosquitto at {rate:,.0f}/s", baseline_rate))
        ratios = head_to_head("mosquitto", gateway_max, gateway_rate, baseline_max, baseline_rate)
    else:
        report_notes.append(NO_MOSQUITTO)
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
            targets.append(Target(
                "latency", f"p99 PUBACK < {TARGET_MQTT_P99_MS:g} ms at half the maximum rate",
                f"{gateway_rate.latency.p99_ms:.1f} ms", gateway_rate.latency.p99_ms < TARGET_MQTT_P99_MS,
            ))
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
