"""The bench's IoTDA scenario: Huawei IoTDA's properties/report against ThingsBoard's telemetry.

mqtt --iotda
    The gateway with its MQTT and management listeners on; ``--devices``
    ThingsBoard devices provisioned over HTTP, and as many IoTDA devices with a
    secret added through the management API (AddDevice). Each kind publishes
    in a closed loop as in the mqtt scenario (QoS --qos, --inflight messages
    unacknowledged a connection, 3 data points a message): the ThingsBoard
    devices to v1/devices/me/telemetry, the IoTDA devices to
    $oc/devices/{device_id}/sys/properties/report with IoTDA's client id and
    HMAC password (simulator.iotda). The runs alternate, ThingsBoard, IoTDA,
    IoTDA, ThingsBoard, and each kind's figure is the mean of its two, so a
    drift of the machine or the database over the run weighs on both alike.
    The target: IoTDA's messages/s at least 90 % of ThingsBoard's.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace

import aiohttp

from fleetgate.simulator.bench_mqtt import mqtt_workload
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    BenchError,
    Tenant,
    Workspace,
    acknowledged_datapoints,
    admin,
    context,
    gateway_server,
    measure,
    new_tenant,
    notes,
    progress,
    project_rows,
    provision_devices,
)
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.processes import RunningServer, free_port
from fleetgate.simulator.report import BenchReport, Ratio, Run, Target
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.workloads import MqttTelemetrySpec

TARGET_SHARE = 0.9
_ADD_CONCURRENCY = 20


def iotda_workload(options: BenchOptions, device_ids: tuple[str, ...], secret: str) -> MqttTelemetrySpec:
    return replace(mqtt_workload(options, device_ids), iotda_secret=secret)


async def add_secret_devices(url: str, tenant: Tenant, token: str, count: int, prefix: str,
                             secret: str) -> tuple[str, ...]:
    """IoTDA devices with ``secret``, node ids ``{prefix}{i}``, through AddDevice; their device ids."""
    progress(f"adding {count} IoTDA devices")
    room = asyncio.Semaphore(_ADD_CONCURRENCY)
    async with aiohttp.ClientSession(url, headers={"X-Auth-Token": token}) as http:

        async def add(i: int) -> str:
            # Plain MQTT, as the ThingsBoard run it is compared with (IoTDA's default is TLS only).
            body = {"node_id": f"{prefix}{i}", "product_id": tenant.product_id,
                    "auth_info": {"auth_type": "SECRET", "secret": secret, "secure_access": False}}
            async with room, http.post(f"/v5/iot/{tenant.project_id}/devices", json=body) as response:
                answer = await response.json()
                if response.status != 201:
                    raise BenchError(f"AddDevice answered {response.status}: {answer}")
                return str(answer["device_id"])

        return tuple(await asyncio.gather(*(add(i) for i in range(count))))


async def _closed(label: str, server: RunningServer, workload: MqttTelemetrySpec, options: BenchOptions) -> LoadResult:
    host, port = server.endpoint("mqtt")
    spec = LoadSpec(host, port, workload, connections=len(workload.tokens), warmup=options.warmup,
                    duration=options.duration, max_requests=options.max_messages)
    return await measure(f"{label}, closed loop", spec, options, unit="messages")


async def iotda_reports(options: BenchOptions, space: Workspace) -> BenchReport:
    if options.target == "mosquitto":
        raise BenchError("--iotda measures the gateway only: IoTDA's authentication is the gateway's")
    tenant = await new_tenant(space)
    token = await admin(space, "create-token", "--project", tenant.project_id)
    secret, prefix = secrets.token_hex(8), f"iotda-{secrets.token_hex(3)}-"
    async with gateway_server(space, mqtt=True, listeners=("management",), management_port=free_port()) as server:
        tokens = await provision_devices(server, tenant, options.devices)
        device_ids = await add_secret_devices(server.urls["management"], tenant, token, options.devices, prefix,
                                              secret)
        thingsboard, iotda = mqtt_workload(options, tokens), iotda_workload(options, device_ids, secret)
        tb_first = await _closed("ThingsBoard telemetry (1)", server, thingsboard, options)
        iotda_first = await _closed("IoTDA properties/report (1)", server, iotda, options)
        iotda_second = await _closed("IoTDA properties/report (2)", server, iotda, options)
        tb_second = await _closed("ThingsBoard telemetry (2)", server, thingsboard, options)
    iotda_rows = await project_rows(space, tenant, prefix)
    tb_rows = await project_rows(space, tenant) - iotda_rows
    exact = options.qos == 1 and space.settings.ack == "stored"
    runs = (tb_first, iotda_first, iotda_second, tb_second)
    # Acknowledged data points include each run's priming message, so the rows check covers them too.
    acknowledged_tb = acknowledged_datapoints(tb_first, tb_second)
    acknowledged_iotda = acknowledged_datapoints(iotda_first, iotda_second)
    tb_rate = (tb_first.requests_per_s + tb_second.requests_per_s) / 2
    iotda_rate = (iotda_first.requests_per_s + iotda_second.requests_per_s) / 2
    share = iotda_rate / tb_rate if tb_rate else 0.0
    targets: tuple[Target, ...] = ()
    if options.qos == 1:
        targets = (Target("IoTDA properties/report", f">= {TARGET_SHARE:.0%} of ThingsBoard telemetry's messages/s",
                          f"{share:.0%} ({iotda_rate:,.0f} against {tb_rate:,.0f})", share >= TARGET_SHARE),)
    return BenchReport(
        scenario="mqtt",
        title=(f"iot-gateway bench mqtt --iotda: ack={space.settings.ack}, {options.devices} ThingsBoard and "
               f"{options.devices} IoTDA devices, one MQTT {options.mqtt_version} connection each, QoS {options.qos}, "
               f"{options.inflight} in flight a connection, 3 data points a message, runs alternating, "
               f"{options.duration:g} s after {options.warmup:g} s warm-up each"),
        context=context(options, space, iotda=True),
        runs=(
            Run("thingsboard_1", "ThingsBoard telemetry, max throughput (1st)", tb_first),
            Run("iotda_1", "IoTDA properties/report, max throughput (1st)", iotda_first),
            Run("iotda_2", "IoTDA properties/report, max throughput (2nd)", iotda_second),
            Run("thingsboard_2", "ThingsBoard telemetry, max throughput (2nd)", tb_second),
        ),
        ratios=(Ratio("IoTDA properties/report / ThingsBoard telemetry, messages/s (means)", share),),
        targets=targets,
        checks={
            "data points acknowledged, ThingsBoard": acknowledged_tb,
            "rows in ts_kv, ThingsBoard": tb_rows,
            "data points acknowledged, IoTDA": acknowledged_iotda,
            "rows in ts_kv, IoTDA": iotda_rows,
            "rows verified": ((tb_rows, iotda_rows) == (acknowledged_tb, acknowledged_iotda) if exact
                              else 0 < tb_rows <= acknowledged_tb and 0 < iotda_rows <= acknowledged_iotda),
        },
        notes=notes(runs),
        unit="messages",
    )
