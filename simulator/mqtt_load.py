"""MQTT load: devices publishing telemetry over their own connections, one load spec run.

Before any clock starts, every device is connected on a timetable
(``connect_rate``, no CONNECT storm) and, at QoS 1, publishes one message whose
PUBACK is awaited (at QoS 0, a PINGREQ), so the server really serves every
connection; a gateway connection goes once round its messages, one at a time, so
that the server has created every sub-device before the clock starts; answers
still missing after ``drain_timeout`` count as errors. The
loops themselves are in simulator.mqtt_qos1, simulator.mqtt_qos0 and
simulator.mqtt_pings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from fleetgate.simulator import iotda
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mqtt_connect import ConnectOutcome, Device, connect_all, disconnect_all
from fleetgate.simulator.mqtt_driver import ClosedLoopDriver, OpenLoopDriver
from fleetgate.simulator.mqtt_gateway import gateway_payloads, turns
from fleetgate.simulator.mqtt_packets import PublishTemplate
from fleetgate.simulator.mqtt_pings import IdleHold, Pinger
from fleetgate.simulator.mqtt_qos0 import Qos0ClosedLoop, Qos0OpenLoop
from fleetgate.simulator.mqtt_qos1 import ClosedLoop, OpenLoop
from fleetgate.simulator.mqtt_tls import client_tls
from fleetgate.simulator.stats import Histogram, LatencyRecorder, LoadResult
from fleetgate.simulator.timeline import TimelineRecorder
from fleetgate.simulator.workloads import MqttTelemetrySpec

_CONNECT_TIMEOUT = 30.0


def devices_of(spec: MqttTelemetrySpec) -> list[Device]:
    """A device's user name is its access token; an empty token: none (a client certificate says who it is).
    An IoTDA device's token is its device id (simulator.iotda)."""
    if spec.iotda_secret:
        stamp = iotda.hour()
        return [Device(iotda.client_id(token, stamp), token, iotda.password(spec.iotda_secret, stamp))
                for token in spec.tokens]
    return [Device(f"{spec.client_prefix}{spec.first + i}", token or None) for i, token in enumerate(spec.tokens)]


def template_of(spec: MqttTelemetrySpec) -> PublishTemplate | list[PublishTemplate]:
    """What every device publishes; a gateway's: its own sub-devices' messages, one template a connection;
    an IoTDA device's: its properties on its own topic."""
    if spec.iotda_secret:
        body = iotda.report_body(spec.body)
        return [PublishTemplate.build(iotda.report_topic(token), body, qos=spec.qos, version=spec.version)
                for token in spec.tokens]
    if not spec.subdevices:
        return PublishTemplate.build(
            spec.topic, spec.body, qos=spec.qos, version=spec.version, timestamp=spec.timestamps
        )
    return [
        PublishTemplate.build_cycle(
            spec.topic,
            gateway_payloads(spec.client_prefix, spec.first + i, spec.subdevices, spec.devices_per_message,
                             spec.body, timestamp=spec.timestamps),
            qos=spec.qos, version=spec.version,
        )
        for i in range(len(spec.tokens))
    ]


def priming_rounds(spec: MqttTelemetrySpec) -> int:
    """Messages each connection sends, one at a time, before the clock: a gateway's whole round."""
    return turns(spec.subdevices, spec.devices_per_message) if spec.subdevices else 1


async def run_spec(
    spec: LoadSpec, ready: Callable[[], Awaitable[None]] | None = None,
    held: Callable[[], Awaitable[None]] | None = None, recorder: LatencyRecorder | None = None,
) -> LoadResult:
    """Connect every device on the ramp, prime, wait for ``ready`` (the start signal), run, disconnect.

    ``mode="idle"``: hold the connections for ``duration`` seconds with keep-alive pings,
    then wait for ``held`` (the server is measured then) before disconnecting.
    ``recorder``: where the measured run's latencies go (default: a new one)."""
    workload = spec.workload
    if not isinstance(workload, MqttTelemetrySpec):
        raise TypeError(f"not an MQTT workload: {type(workload).__name__}")
    datapoints = workload.datapoints
    ramp = len(workload.tokens) / workload.connect_rate
    tls = client_tls(workload.tls)

    async def connect() -> ConnectOutcome:
        async with asyncio.timeout(ramp + _CONNECT_TIMEOUT * 2):
            return await connect_all(
                spec.host, spec.port, devices_of(workload), template_of(workload), version=workload.version,
                window=workload.inflight, keepalive=workload.keepalive, rate=workload.connect_rate,
                timeout=_CONNECT_TIMEOUT, source_hosts=workload.source_hosts, tls=tls,
                server_hostname=workload.tls.server_hostname if workload.tls else None,
            )

    if workload.tls is not None and workload.tls.resume:
        # Each device connects once first, unmeasured, and keeps that session's ticket:
        # the measured connections below resume it.
        earlier = await connect()
        disconnect_all(earlier.connections)
        if earlier.errors:
            return replace(_empty(datapoints), errors={f"first connection: {k}": n for k, n in earlier.errors.items()})
    outcome = await connect()
    connections = outcome.connections
    try:
        if not connections:
            primed = _empty(datapoints)
        elif workload.qos == 0 or spec.mode == "idle":
            primed = await Pinger(connections, datapoints, 0).run(spec.drain_timeout)
            primed = replace(primed, total_ok=0)  # no message was sent
        else:
            primed = _empty(datapoints)
            for _ in range(priming_rounds(workload)):
                primer = ClosedLoop(connections, datapoints, len(connections), burst=1)
                primed = (await primer.run(0, spec.drain_timeout, 0)).with_priming(primed)
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
            driver: OpenLoopDriver | ClosedLoopDriver = (
                OpenLoop(connections, datapoints, spec.max_requests, spec.rate) if workload.qos
                else Qos0OpenLoop(connections, datapoints, spec.max_requests, spec.rate)
            )
            if recorder is not None:
                driver.use_recorder(recorder)
            result = await driver.run(spec.warmup, spec.duration, spec.drain_timeout)
        else:
            driver = (
                ClosedLoop(connections, datapoints, spec.max_requests) if workload.qos
                else Qos0ClosedLoop(connections, datapoints, spec.max_requests, workload.inflight)
            )
            if recorder is not None:
                driver.use_recorder(recorder)
            result = await driver.run(spec.warmup, spec.duration, spec.drain_timeout)
    finally:
        disconnect_all(connections)
    if isinstance(recorder, TimelineRecorder):
        result = replace(result, timeline=recorder.timeline())
    return replace(result.with_priming(primed).with_errors(outcome.errors), connect_s=outcome.elapsed_s)


def _empty(datapoints: int) -> LoadResult:
    return LoadResult("none", 0, 0.0, 0, datapoints, Histogram())
