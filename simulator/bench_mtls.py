"""The bench's mtls scenario: certificate auto-registration, first connections and reconnections.

mtls
    The gateway with an MQTTS listener (a server certificate from a throw-away
    CA) and its management API; the bench creates the project and product,
    then a device CA through the management API as an operator would (upload,
    proof of possession, template, binding) and mints ``--devices`` ECDSA P-256
    device certificates before any clock starts. First run: every device
    connects for the first time over mutual TLS and is registered by the
    gateway (a device row created from the template); second run: the same
    devices connect again, now authenticated by their certificate's
    fingerprint; third run: each device connects once more, unmeasured, then
    again resuming that connection's TLS session (its ticket), as a device that
    reconnects often does. Each figure is connections accepted (CONNACK 0) over
    the time from the first connect to the last CONNACK, ``--connect-rate``
    bounding how fast they are opened (default here: no ramp, 500 handshakes in
    flight a generator). The gateway's own count of resumed handshakes (its
    /metrics) says that the third run resumed.
"""

from __future__ import annotations

import re
from dataclasses import replace

import aiohttp

from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    BenchError,
    Workspace,
    admin,
    context,
    gateway_server,
    new_tenant,
    notes,
    product_devices,
    progress,
)
from fleetgate.simulator.fleet import wait_until_trusted
from fleetgate.simulator.fleet_ca import TestCa, register_ca
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mqtt_tls import MqttTls
from fleetgate.simulator.processes import free_port
from fleetgate.simulator.report import BenchReport, Ratio, Run, Target
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.tls_ceiling import handshake_cost
from fleetgate.simulator.worker import run_load
from fleetgate.simulator.workloads import MqttTelemetrySpec

TARGET_REGISTRATIONS_PER_S = 500
TARGET_RECONNECTIONS_PER_S = 1_000
_NO_RAMP = 1_000_000.0


_RESUMED = re.compile(r'^gateway_tls_handshakes_total\{protocol="mqtt",resumed="true"\} ([0-9.e+]+)$', re.M)


async def _resumed_handshakes(management_url: str) -> int:
    """The gateway's count of TLS handshakes resumed from a ticket (its /metrics)."""
    async with aiohttp.ClientSession() as http, http.get(f"{management_url}/metrics") as response:
        found = _RESUMED.search(await response.text())
    return int(float(found.group(1))) if found else 0


def _as_connections(result: LoadResult) -> LoadResult:
    """The run's figure is its connections: accepted ones over the time connecting took."""
    return replace(result, ok=result.connections, window_s=result.connect_s, total_ok=result.connections)


async def _connect_all(label: str, spec: LoadSpec, options: BenchOptions) -> LoadResult:
    progress(f"{label}: {spec.connections:,} devices connecting over mutual TLS")
    result = _as_connections(await run_load(spec, options.load_processes))
    progress(f"{label}: {result.ok:,} in {result.window_s:.2f} s, {result.requests_per_s:,.0f}/s, "
             f"{result.error_count} errors")
    return result


async def mtls(options: BenchOptions, space: Workspace) -> BenchReport:
    server_ca = TestCa.create("bench server CA")
    server_cert, server_key = server_ca.write_server(space.root / "server")
    (space.root / "server" / "ca.pem").write_text(server_ca.pem)
    devices_ca = TestCa.create("bench device CA")
    progress(f"minting {options.devices:,} device certificates (ECDSA P-256)")
    paths = devices_ca.write_devices(space.root / "devices", [f"meter-{i}" for i in range(options.devices + 1)])
    probe, paths = paths[-1], paths[:-1]
    tenant = await new_tenant(space)
    token = await admin(space, "create-token", "--project", tenant.project_id)
    async with gateway_server(
        space, listeners=("mqtts", "management"), mqtts_port=free_port(), management_port=free_port(),
        tls_cert_file=server_cert, tls_key_file=server_key,
    ) as gateway:
        host, port = gateway.endpoint("mqtts")
        progress("registering the device CA through the management API")
        await register_ca(devices_ca, gateway.urls["management"], tenant.project_id, token, tenant.product_id)
        await wait_until_trusted(host, port, probe, str(space.root / "server" / "ca.pem"), None, 4, "probe")
        workload = MqttTelemetrySpec(
            tuple("" for _ in paths), connect_rate=options.connect_rate if options.connect_rate != 1_000.0
            else _NO_RAMP, client_prefix="meter-",
            tls=MqttTls(str(space.root / "server" / "ca.pem"), paths),
        )
        spec = LoadSpec(host, port, workload, connections=len(paths), mode="idle", warmup=0, duration=0,
                        max_requests=len(paths))
        first = await _connect_all("first connections (auto-registration)", spec, options)
        again = await _connect_all("reconnections", spec, options)
        resuming = replace(workload, tls=replace(workload.tls, resume=True))
        resumed = await _connect_all("reconnections resuming their TLS session", replace(spec, workload=resuming),
                                     options)
        resumed_count = await _resumed_handshakes(gateway.urls["management"])
    # The baseline, in the same run: the handshake alone, in memory, same certificates and contexts.
    cost = handshake_cost(server_cert, server_key, server_ca.pem, devices_ca.pem, paths[0])
    progress(f"one mutual TLS handshake, no gateway: server {cost.server_ms:.2f} ms, "
             f"client {cost.client_ms:.2f} ms of CPU")
    registered = await product_devices(space, tenant)
    if not first.ok:
        raise BenchError(f"no device was registered: {dict(first.errors)}")
    return BenchReport(
        scenario="mtls",
        title=(f"iot-gateway bench mtls: {options.devices:,} devices, ECDSA P-256 client certificates, "
               f"MQTT 3.1.1 over TLS, one gateway process unless --workers"),
        context=context(options, space),
        runs=(Run("first_connections", "first connections (auto-registration)", first),
              Run("reconnections", "reconnections, full handshake", again),
              Run("reconnections_resumed", "reconnections, TLS session resumed", resumed)),
        targets=(
            Target("registrations", f">= {TARGET_REGISTRATIONS_PER_S:,} first connections/s",
                   f"{first.requests_per_s:,.0f}", first.requests_per_s >= TARGET_REGISTRATIONS_PER_S),
            Target("reconnections", f">= {TARGET_RECONNECTIONS_PER_S:,} reconnections/s, full handshake",
                   f"{again.requests_per_s:,.0f}", again.requests_per_s >= TARGET_RECONNECTIONS_PER_S),
            Target("resumed reconnections",
                   f">= {TARGET_RECONNECTIONS_PER_S:,} reconnections/s, TLS session resumed",
                   f"{resumed.requests_per_s:,.0f}", resumed.requests_per_s >= TARGET_RECONNECTIONS_PER_S),
        ),
        ratios=(
            Ratio("reconnections / handshakes one core can do and nothing else", again.requests_per_s
                  / cost.server_ceiling_per_s if cost.server_ceiling_per_s else 0.0),
        ),
        checks={
            "server CPU a handshake, ms (in memory, no gateway)": round(cost.server_ms, 2),
            "client CPU a handshake, ms (in memory, no gateway)": round(cost.client_ms, 2),
            "handshakes a second, one core, nothing else": round(cost.server_ceiling_per_s),
            "devices registered": registered,
            "handshakes the gateway resumed": resumed_count,
            "resumptions verified": resumed_count == resumed.connections,
            "devices verified": registered == options.devices + 1,  # the trust probe is one of them
        },
        notes=("the gateway's CA trust probe registers one more device before the clock starts",
               *notes((first, again, resumed))),
        unit="connections",
    )
