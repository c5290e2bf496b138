"""The bench's idle-connections scenario: what holding a connection costs a server.

idle-connections
    ``--connections`` (50,000) idle MQTT connections, each with a device of its
    own, held for ``--duration`` seconds with keep-alive PINGREQs on a timetable;
    the server's VmRSS before connecting and while holding them gives its
    memory per connection, for the gateway and for mosquitto. The count is cut
    to what RLIMIT_NOFILE allows one process (said in a note); beyond 20,000,
    connections come from several source addresses (127.0.0.2, ...), and
    generator processes are added so that each stays under the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from fleetgate.simulator.bench_mqtt import mqtt_workload
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    NO_MOSQUITTO,
    Workspace,
    context,
    gateway_server,
    made_up_tokens,
    new_tenant,
    progress,
    provision_devices,
)
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mosquitto import mosquitto, mosquitto_path
from fleetgate.simulator.processes import RunningServer, raise_open_files_limit, tree_proportional_kib, tree_resident_kib
from fleetgate.simulator.report import BenchReport, Ratio, Run, Target
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.worker import run_load

# The figure for idle MQTT connections: the gateway's memory for each.
TARGET_IDLE_KIB_PER_CONNECTION = 10.0
TARGET_IDLE_TOTAL_KIB = 1024 * 1024  # issue 6: 100,000 connections in under 1 GiB

_IDLE_FD_MARGIN = 256  # descriptors a server or generator needs besides its connections
_CONNECTIONS_PER_SOURCE = 20_000  # of about 28,000 ephemeral ports a source address has
_IDLE_KEEPALIVE_S = 60


@dataclass(frozen=True, slots=True)
class _Held:
    """One server holding idle connections: its resident memory before and while holding them."""

    result: LoadResult
    rss_before_kib: int
    rss_held_kib: int
    pss_held_kib: int = 0  # Pss summed: a page shared by n processes (its own or others) counted 1/n

    @property
    def kib_per_connection(self) -> float:
        held = self.result.connections
        return (self.rss_held_kib - self.rss_before_kib) / held if held else 0.0


def _idle_plan(options: BenchOptions, workers: int) -> tuple[int, int, int, tuple[str, ...], list[str]]:
    """(connections, gateway workers, generator processes, source addresses, notes) within this
    machine's limits.

    Every connection is a file descriptor in the server and in a generator, and
    RLIMIT_NOFILE's hard limit bounds both (raising it needs CAP_SYS_RESOURCE);
    one source address has about 28,000 ephemeral ports towards one server port.
    The gateway gets enough worker processes (``--workers``, or more) to hold the
    connections with a 10% margin: SO_REUSEPORT spreads them by a hash of the
    addresses and ports, so each worker's share varies by about its square root
    (100,000 over 6: 16,667, give or take 120), far less than the margin.
    """
    limit = raise_open_files_limit()
    per_process = max(1, limit - _IDLE_FD_MARGIN)
    wanted = options.connection_count
    workers = max(workers, math.ceil(wanted * 1.1 / per_process))
    count = wanted
    notes = []
    if workers > 1:
        notes.append(
            f"the gateway ran {workers} worker processes: the open files limit (RLIMIT_NOFILE) is {limit:,} here "
            "for each process; its memory is summed over them and the supervisor"
        )
    processes = max(options.load_processes, 1, math.ceil(count / per_process))
    sources = tuple(
        f"127.0.0.{2 + i}" for i in range(math.ceil(count / _CONNECTIONS_PER_SOURCE))
    ) if count > _CONNECTIONS_PER_SOURCE else ()
    return count, workers, processes, sources, notes


async def _hold(
    name: str, server: RunningServer, tokens: tuple[str, ...], options: BenchOptions, processes: int,
    sources: tuple[str, ...],
) -> _Held:
    host, port = server.endpoint("mqtt")
    workload = replace(
        mqtt_workload(options, tokens), source_hosts=sources, keepalive=_IDLE_KEEPALIVE_S,
    )
    spec = LoadSpec(
        host, port, workload, connections=len(tokens), mode="idle", warmup=0, duration=options.duration,
        max_requests=len(tokens),
    )
    before = tree_resident_kib(server.pid)
    held: list[int] = []

    async def measure() -> None:
        held.extend((tree_resident_kib(server.pid), tree_proportional_kib(server.pid)))

    progress(f"{name}: {len(tokens):,} idle connections, {options.duration:g} s held")
    result = await run_load(spec, processes, on_held=measure)
    outcome = _Held(result, before, held[0] if held else before, held[1] if held else 0)
    progress(
        f"{name}: {result.connections:,} connections held, RSS {before:,} -> {outcome.rss_held_kib:,} KiB, "
        f"{outcome.kib_per_connection:.1f} KiB a connection, {result.error_count} errors"
    )
    return outcome


async def idle_connections(options: BenchOptions, space: Workspace) -> BenchReport:
    count, workers, processes, sources, notes = _idle_plan(options, space.settings.workers)
    runs: list[Run] = []
    checks: dict[str, Any] = {}
    targets: list[Target] = []
    ratios: list[Ratio] = []
    gateway_held: _Held | None = None
    if options.target == "gateway":
        tenant = await new_tenant(space)
        async with gateway_server(space, mqtt=True, workers=workers) as gateway:
            tokens = await provision_devices(gateway, tenant, count)
            gateway_held = await _hold("gateway", gateway, tokens, options, processes, sources)
        runs.append(Run("gateway_idle", "gateway, idle connections", gateway_held.result))
        targets.append(Target(
            "idle memory", f"<= {TARGET_IDLE_KIB_PER_CONNECTION:g} KiB a connection",
            f"{gateway_held.kib_per_connection:.1f} KiB",
            gateway_held.kib_per_connection <= TARGET_IDLE_KIB_PER_CONNECTION,
        ))
        targets.append(Target(
            "idle RSS", f"gateway RSS (summed over its processes) < {TARGET_IDLE_TOTAL_KIB // 1024:,} MiB holding them",
            f"{gateway_held.rss_held_kib // 1024:,} MiB (PSS: {gateway_held.pss_held_kib // 1024:,} MiB)",
            gateway_held.rss_held_kib < TARGET_IDLE_TOTAL_KIB,
        ))
    else:
        tokens = made_up_tokens(count)
    baseline_held: _Held | None = None
    one_process = max(1, raise_open_files_limit() - _IDLE_FD_MARGIN)
    if len(tokens) > one_process and (mosquitto_path() is not None or options.target == "mosquitto"):
        notes.append(f"mosquitto (one process) held {one_process:,} of the connections: the open files limit")
        tokens = tokens[:one_process]
    if mosquitto_path() is not None or options.target == "mosquitto":
        async with mosquitto(space.root) as broker:
            baseline_held = await _hold("mosquitto", broker, tokens, options, processes, sources)
        runs.append(Run("baseline_idle", "mosquitto, idle connections", baseline_held.result))
    else:
        notes.append(NO_MOSQUITTO)
    for key, held in (("gateway", gateway_held), ("mosquitto", baseline_held)):
        if held is not None:
            checks.update({
                f"{key} connections held": held.result.connections,
                f"{key} RSS before, KiB": held.rss_before_kib,
                f"{key} RSS holding them, KiB": held.rss_held_kib,
                f"{key} PSS holding them, KiB": held.pss_held_kib,
                f"{key} KiB a connection": round(held.kib_per_connection, 2),
            })
    if gateway_held is not None and baseline_held is not None and baseline_held.kib_per_connection > 0:
        ratios.append(Ratio(
            "gateway / mosquitto, memory a connection",
            gateway_held.kib_per_connection / baseline_held.kib_per_connection, percent=False,
        ))
    checks["connections verified"] = all(
        run.result.connections == (count if run.name == "gateway_idle" else len(tokens)) for run in runs
    )
    return BenchReport(
        scenario="idle-connections",
        title=(
            f"iot-gateway bench idle-connections: {count:,} idle MQTT {options.mqtt_version} connections, "
            f"keep-alive {_IDLE_KEEPALIVE_S} s (a PINGREQ every {_IDLE_KEEPALIVE_S // 2} s), "
            f"held {options.duration:g} s; memory is the server's VmRSS"
        ),
        context=context(options, space, generator_processes=processes, gateway_workers=workers,
                        source_addresses=list(sources)),
        runs=tuple(runs),
        ratios=tuple(ratios),
        targets=tuple(targets),
        checks=checks,
        notes=tuple(notes),
        unit="pings",
    )
