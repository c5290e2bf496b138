"""Load generator processes: ``python -m simulator.worker`` runs one load spec.

Why a process of its own: the bench orchestration (asyncpg pool, gateway and
baseline children, reporting) stays out of the generator's event loop, the
generator starts from a clean heap each run, and ``--load-processes N`` can
spread the devices over N generators. Measured on the project's 2-core machine
against the bare aiohttp baseline with 1,000 connections, two rounds each: load
from the bench process itself gave 7,000 and 5,500 requests/s, from one worker
process 8,500 and 10,000, from two worker processes 7,200 and 7,200. One worker
needs 10% to 30% of a core at these rates (40% at 20,000 requests/s), so it is
not the bottleneck, and a second one only takes CPU from the server and
PostgreSQL on the other core. One is the default. Each worker reports its CPU
time, so a saturated generator shows up in the results.

Protocol on stdin/stdout, one JSON document a line: the bench writes the spec;
the worker opens its connections and answers ``{"ready": true}``; the bench
writes ``go`` to every worker at once, so all measure the same window; the
worker answers with its result (histogram included, so results merge) and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from simulator import runtime
from simulator.http11 import close_all, connect_all
from simulator.http_load import Workload, closed_loop, open_loop
from simulator.stats import LoadResult, merge_all
from simulator.workloads import (
    ProvisionSpec,
    ProvisionWorkload,
    TelemetrySpec,
    TelemetryWorkload,
    WorkloadSpec,
    spec_from_json,
)

_CONNECT_TIMEOUT = 60.0
_MARGIN = 30.0  # beyond warm-up, duration and drain, before a worker is given up on


class WorkerFailed(Exception):
    """A load generator process failed or broke the protocol."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str
    port: int
    workload: WorkloadSpec
    connections: int
    mode: Literal["closed", "open"] = "closed"
    warmup: float = 2.0
    duration: float = 10.0
    rate: float | None = None
    max_requests: int = 10_000_000
    drain_timeout: float = 10.0

    @property
    def deadline(self) -> float:
        """The longest the run may take once started."""
        return self.warmup + self.duration + self.drain_timeout

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host, "port": self.port, "workload": self.workload.to_json(),
            "connections": self.connections, "mode": self.mode, "warmup": self.warmup, "duration": self.duration,
            "rate": self.rate, "max_requests": self.max_requests, "drain_timeout": self.drain_timeout,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadSpec:
        return cls(
            host=data["host"], port=int(data["port"]), workload=spec_from_json(data["workload"]),
            connections=int(data["connections"]), mode=data["mode"], warmup=float(data["warmup"]),
            duration=float(data["duration"]), rate=data["rate"], max_requests=int(data["max_requests"]),
            drain_timeout=float(data["drain_timeout"]),
        )

    def split(self, parts: int) -> list[LoadSpec]:
        """The same load shared by ``parts`` generators: devices, connections, rate and count divided."""
        if parts <= 1:
            return [self]
        shares: list[tuple[WorkloadSpec, int]]
        match self.workload:
            case TelemetrySpec() as telemetry:  # one connection per device
                shares = [(share, len(share.tokens)) for share in telemetry.split(parts)]
            case ProvisionSpec() as provision:
                parts = min(parts, self.connections)
                shares = [
                    (replace(provision, prefix=f"{provision.prefix}{i}-"),
                     self.connections // parts + (1 if i < self.connections % parts else 0))
                    for i in range(parts)
                ]
        return [
            replace(
                self, workload=workload, connections=connections,
                rate=self.rate * connections / self.connections if self.rate else None,
                max_requests=max(1, self.max_requests * connections // self.connections),
            )
            for workload, connections in shares
        ]


def build_workload(spec: LoadSpec) -> Workload:
    host = f"{spec.host}:{spec.port}"
    match spec.workload:
        case TelemetrySpec() as telemetry:
            return TelemetryWorkload(telemetry, host)
        case ProvisionSpec() as provision:
            return ProvisionWorkload(provision, host)


async def run_spec(
    spec: LoadSpec, ready: Callable[[], Awaitable[None]] | None = None, workload: Workload | None = None
) -> LoadResult:
    """Connect, wait for ``ready`` (the start signal), run the load, close."""
    workload = workload or build_workload(spec)
    async with asyncio.timeout(_CONNECT_TIMEOUT):
        connections = await connect_all(spec.host, spec.port, spec.connections)
    try:
        # One request on every connection, all answered, before the clock starts:
        # a connection the client sees as open may still wait in the server's
        # accept queue (uvloop accepts about one connection per loop iteration,
        # so a busy server leaves late ones there for seconds).
        primed = await closed_loop(
            connections, workload, warmup=0, duration=_CONNECT_TIMEOUT, max_requests=len(connections),
            drain_timeout=0,
        )
        if ready is not None:
            await ready()
        if spec.mode == "open":
            if not spec.rate:
                raise ValueError("an open loop needs a rate")
            result = await open_loop(
                connections, workload, rate=spec.rate, warmup=spec.warmup, duration=spec.duration,
                max_requests=spec.max_requests, drain_timeout=spec.drain_timeout,
            )
        else:
            result = await closed_loop(
                connections, workload, warmup=spec.warmup, duration=spec.duration,
                max_requests=spec.max_requests, drain_timeout=spec.drain_timeout,
            )
    finally:
        close_all(connections)
    return result.with_priming(primed)


async def run_load(spec: LoadSpec, processes: int) -> LoadResult:
    """Run ``spec`` in ``processes`` worker processes side by side (0: in this process)."""
    if processes <= 0:
        return await run_spec(spec)
    specs = spec.split(processes)
    async with contextlib.AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(_Worker.start()) for _ in specs]
        async with asyncio.timeout(_CONNECT_TIMEOUT):
            await asyncio.gather(*(w.prepare(s) for w, s in zip(workers, specs, strict=True)))
        for worker in workers:
            worker.go()
        async with asyncio.timeout(spec.deadline + _MARGIN):
            results = await asyncio.gather(*(w.result() for w in workers))
    return merge_all(results)


class _Worker:
    """One ``python -m simulator.worker`` child, killed by its PID if it outlives its use."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls) -> AsyncIterator[_Worker]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulator.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        try:
            yield cls(process)
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()

    async def prepare(self, spec: LoadSpec) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(orjson.dumps(spec.to_json()) + b"\n")
        await self._process.stdin.drain()
        if orjson.loads(await self._line()) != {"ready": True}:
            raise WorkerFailed("the load generator did not get ready")

    def go(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(b"go\n")

    async def result(self) -> LoadResult:
        return LoadResult.from_json(orjson.loads(await self._line()))

    async def _line(self) -> bytes:
        assert self._process.stdout is not None
        line = await self._process.stdout.readline()
        if not line:
            raise WorkerFailed(f"the load generator (pid {self._process.pid}) exited early; see its stderr")
        return line


async def _serve_one() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    spec = LoadSpec.from_json(orjson.loads(await reader.readline()))

    async def ready() -> None:
        _emit({"ready": True})
        if (await reader.readline()).strip() != b"go":
            raise WorkerFailed("expected 'go' from the bench")

    async with asyncio.timeout(_CONNECT_TIMEOUT + spec.deadline + _MARGIN):
        result = await run_spec(spec, ready)
    _emit(result.to_json(histogram=True))


def _emit(document: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(document) + b"\n")
    sys.stdout.buffer.flush()


def main() -> int:
    runtime.run(_serve_one())
    return 0


if __name__ == "__main__":
    sys.exit(main())
