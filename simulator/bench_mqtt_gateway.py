"""The bench's gateway-API scenario: sub-devices behind gateway connections against direct devices.

mqtt --gateways N
    The gateway with its MQTT listener on, ``--devices`` devices and N gateway
    devices (ThingsBoard's ``"gateway": true``) provisioned over HTTP. First
    the direct devices publish as in the mqtt scenario (closed loop, QoS --qos,
    --inflight messages unacknowledged a connection); then each gateway
    connection publishes v1/gateway/telemetry for its --subdevices
    sub-devices, --devices-per-message of them in each message, taking turns
    (simulator.mqtt_gateway), --gateway-inflight messages unacknowledged a
    connection: by default as many as keep the direct run's data points in
    flight (devices x inflight / (gateways x K)), so that both runs offer the
    server the same load. Each sub-device is created by its first message,
    before the clock starts. The figure compared is data points a second: at
    QoS 1 with stored acknowledgements a PUBACK means the message's rows are
    committed, so they are stored data points, and the rows in ts_kv are
    checked against them for both runs. The target: the gateway API carries at
    least 80 % of the direct devices' rate. ``--target mosquitto`` runs both
    loads against mosquitto alone (the generator's own check, no database).
"""

from __future__ import annotations

from dataclasses import replace

from fleetgate.simulator.bench_mqtt import mqtt_workload
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    BenchError,
    Workspace,
    acknowledged_datapoints,
    context,
    gateway_server,
    made_up_tokens,
    measure,
    mosquitto_server,
    new_tenant,
    notes,
    project_devices,
    project_rows,
    provision_devices,
)
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mqtt_gateway import GATEWAY_TELEMETRY_TOPIC
from fleetgate.simulator.processes import RunningServer
from fleetgate.simulator.report import BenchReport, Ratio, Run, Target
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.workloads import MqttTelemetrySpec

# The issue's figure: sub-devices through gateways at 80 % of direct devices' stored data points.
TARGET_SHARE = 0.8


def gateway_workload(options: BenchOptions, tokens: tuple[str, ...]) -> MqttTelemetrySpec:
    return replace(
        mqtt_workload(options, tokens), topic=GATEWAY_TELEMETRY_TOPIC, subdevices=options.subdevices,
        devices_per_message=options.devices_per_message, inflight=options.gateway_window,
    )


async def _closed(label: str, server: RunningServer, workload: MqttTelemetrySpec, options: BenchOptions) -> LoadResult:
    host, port = server.endpoint("mqtt")
    spec = LoadSpec(
        host, port, workload, connections=len(workload.tokens), warmup=options.warmup, duration=options.duration,
        max_requests=options.max_messages,
    )
    return await measure(f"{label}, closed loop", spec, options, unit="messages")


async def gateway_api(options: BenchOptions, space: Workspace) -> BenchReport:
    if options.devices_per_message > options.subdevices:
        raise BenchError(f"--devices-per-message {options.devices_per_message} is more than the "
                         f"--subdevices {options.subdevices} a gateway has")
    if options.target == "mosquitto":
        async with mosquitto_server(space) as broker:
            direct = await _closed("direct devices, mosquitto", broker,
                                   mqtt_workload(options, made_up_tokens(options.devices)), options)
            through = await _closed("gateways, mosquitto", broker,
                                    gateway_workload(options, made_up_tokens(options.gateways)), options)
        return _report(options, space, direct, through, "mosquitto alone", {})
    tenant = await new_tenant(space)
    async with gateway_server(space, mqtt=True) as server:
        tokens = await provision_devices(server, tenant, options.devices)
        gateway_tokens = await provision_devices(server, tenant, options.gateways, gateway=True)
        direct = await _closed("direct devices", server, mqtt_workload(options, tokens), options)
        workload = gateway_workload(options, gateway_tokens)
        through = await _closed("sub-devices through gateways", server, workload, options)
    subdevice_rows = await project_rows(space, tenant, workload.client_prefix)
    direct_rows = await project_rows(space, tenant) - subdevice_rows
    subdevices = await project_devices(space, tenant, workload.client_prefix)
    # As in the mqtt scenario: rows are keyed (device, key, ts), and a device's readings
    # without a ts are stamped with strictly increasing milliseconds, so with stored
    # acknowledgements every acknowledged data point is its own row.
    exact = options.qos == 1 and space.settings.ack == "stored"
    acknowledged_direct = acknowledged_datapoints(direct)
    acknowledged_through = acknowledged_datapoints(through)
    checks: dict[str, object] = {
        "data points acknowledged, direct devices": acknowledged_direct,
        "rows in ts_kv, direct devices": direct_rows,
        "data points acknowledged, sub-devices": acknowledged_through,
        "rows in ts_kv, sub-devices": subdevice_rows,
        "sub-devices in the database": subdevices,
        "rows verified": (
            (direct_rows, subdevice_rows) == (acknowledged_direct, acknowledged_through) if exact
            else 0 < direct_rows <= acknowledged_direct and 0 < subdevice_rows <= acknowledged_through
        ),
    }
    if options.qos == 1:  # at QoS 1 every sub-device's first message was acknowledged before the clock
        checks["sub-devices verified"] = subdevices == options.gateways * options.subdevices
    return _report(options, space, direct, through, f"ack={space.settings.ack}", checks)


def _report(
    options: BenchOptions, space: Workspace, direct: LoadResult, through: LoadResult, what: str,
    checks: dict[str, object],
) -> BenchReport:
    share = through.datapoints_per_s / direct.datapoints_per_s if direct.datapoints_per_s else 0.0
    targets: tuple[Target, ...] = ()
    if options.target == "gateway" and options.qos == 1:
        targets = (Target(
            "gateway API", f">= {TARGET_SHARE:.0%} of the direct devices' stored data points/s",
            f"{share:.0%} ({through.datapoints_per_s:,.0f} against {direct.datapoints_per_s:,.0f})",
            share >= TARGET_SHARE,
        ),)
    report_notes: tuple[str, ...] = ()
    if checks and not (options.qos == 1 and space.settings.ack == "stored"):
        report_notes = ("rows in ts_kv are only checked to be no more than the data points sent: with QoS 0 or "
                        "ack = accepted nothing says which messages were stored",)
    return BenchReport(
        scenario="mqtt",
        title=(
            f"iot-gateway bench mqtt --gateways: {what}, {options.gateways} gateway connections x "
            f"{options.subdevices} sub-devices, {options.devices_per_message} a message, against "
            f"{options.devices} direct devices; MQTT {options.mqtt_version}, QoS {options.qos}, "
            f"{options.inflight} in flight a direct device, {options.gateway_window} a gateway, "
            f"3 data points a device a message, "
            f"{options.duration:g} s after {options.warmup:g} s warm-up"
        ),
        context=context(options, space, gateways=options.gateways, subdevices=options.subdevices,
                        devices_per_message=options.devices_per_message, gateway_inflight=options.gateway_window),
        runs=(
            Run("direct_max", f"{options.devices} direct devices, max throughput", direct),
            Run("gateway_api_max", f"{options.gateways} gateways x {options.subdevices} sub-devices, "
                                   f"{options.devices_per_message} a message, max throughput", through),
        ),
        ratios=(Ratio("sub-devices through gateways / direct devices, data points/s", share),),
        targets=targets,
        checks=checks,
        notes=(*report_notes, *notes((direct, through))),
        unit="messages",
    )
