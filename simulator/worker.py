"""Load generator processes: ``python -m fleetgate.simulator.worker`` runs one load spec.

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
An idle run (``mode="idle"``) has one more step before the result: once its
hold is over, the worker answers ``{"held": true}`` with its connections still
open and waits for ``release``, so the bench can measure the server then. A
spec with a ``progress_interval`` makes the worker write ``{"progress": N}``
(answers so far) that often while it runs, for a live display.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from fleetgate.simulator import coap_load, http_load, mqtt_load, runtime
from fleetgate.simulator.coap_packets import CoapTelemetrySpec
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.processes import raise_open_files_limit
from fleetgate.simulator.stats import LoadResult, merge_all
from fleetgate.simulator.timeline import TimelineRecorder
from fleetgate.simulator.workloads import MqttTelemetrySpec

__all__ = ["LoadSpec", "WorkerFailed", "run_load", "run_spec"]

_MARGIN = 30.0  # beyond warm-up, duration and drain, before a worker is given up on


class WorkerFailed(Exception):
    """A load generator process failed or broke the protocol."""


Phase = Callable[[], Awaitable[None]]
# A worker's result is one JSON line, and with a timeline it holds a histogram a second:
# a 20-second simulate run at 15,000 messages a second already passed asyncio's 64 KiB.
_RESULT_LINE_LIMIT = 1 << 28
Progress = Callable[[int], None]


async def run_spec(
    spec: LoadSpec, ready: Phase | None = None, held: Phase | None = None, progress: Progress | None = None
) -> LoadResult:
    """Run one spec in this process: connect, wait for ``ready`` (the start signal), load,
    (idle runs: wait for ``held`` with the connections open), close. With a timeline or a
    progress interval in the spec, latencies go to a timeline, whose count ``progress`` is
    told every ``progress_interval`` seconds."""
    recorder = TimelineRecorder() if spec.timeline or spec.progress_interval else None
    ticks: list[asyncio.Task[None]] = []  # the progress clock, at most one: owned here, ended below

    async def go() -> None:
        if ready is not None:
            await ready()
        if recorder is not None:
            recorder.begin()
            if progress is not None and spec.progress_interval > 0:
                ticks.append(asyncio.create_task(_tick(recorder, spec.progress_interval, progress)))

    try:
        if isinstance(spec.workload, MqttTelemetrySpec):
            return await mqtt_load.run_spec(spec, go, held, recorder)
        if isinstance(spec.workload, CoapTelemetrySpec):
            return await coap_load.run_spec(spec, go, recorder)
        return await http_load.run_spec(spec, go, recorder=recorder)
    finally:
        for tick in ticks:
            tick.cancel()
        await asyncio.gather(*ticks, return_exceptions=True)


async def _tick(recorder: TimelineRecorder, interval: float, progress: Progress) -> None:
    """The display's clock: bounded by the run, which cancels it."""
    while True:
        await asyncio.sleep(interval)
        progress(recorder.count)


async def run_load(
    spec: LoadSpec, processes: int, *, on_ready: Phase | None = None, on_held: Phase | None = None,
    on_progress: Progress | None = None,
) -> LoadResult:
    """Run ``spec`` in ``processes`` worker processes side by side (0: in this process).

    ``on_ready``: awaited once every connection is open, before the clock starts;
    ``on_held``: idle runs, awaited after the hold with every connection still open;
    ``on_progress``: with a progress interval in the spec, the answers so far, all processes.
    """
    if processes <= 0:
        return await run_spec(spec, on_ready, on_held, on_progress)
    specs = spec.split(processes)
    counts = [0] * len(specs)

    def report(index: int, count: int) -> None:
        counts[index] = count
        if on_progress is not None:
            on_progress(sum(counts))

    async with contextlib.AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(_Worker.start(functools.partial(report, i))) for i in range(len(specs))
        ]
        async with asyncio.timeout(spec.setup_timeout):
            await asyncio.gather(*(w.prepare(s) for w, s in zip(workers, specs, strict=True)))
        if on_ready is not None:
            await on_ready()
        for worker in workers:
            worker.go()
        async with asyncio.timeout(spec.deadline + _MARGIN):
            if spec.mode == "idle":
                await asyncio.gather(*(w.held() for w in workers))
                if on_held is not None:
                    await on_held()
                for worker in workers:
                    worker.release()
            results = await asyncio.gather(*(w.result() for w in workers))
    return merge_all(results)


class _Worker:
    """One ``python -m fleetgate.simulator.worker`` child, killed by its PID if it outlives its use."""

    def __init__(self, process: asyncio.subprocess.Process, progress: Progress) -> None:
        self._process = process
        self._progress = progress

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, progress: Progress) -> AsyncIterator[_Worker]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetgate.simulator.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=_RESULT_LINE_LIMIT,
        )
        try:
            yield cls(process, progress)
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

    async def held(self) -> None:
        if orjson.loads(await self._line()) != {"held": True}:
            raise WorkerFailed("the load generator did not report its hold")

    def release(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(b"release\n")

    async def result(self) -> LoadResult:
        return LoadResult.from_json(orjson.loads(await self._line()))

    async def _line(self) -> bytes:
        """The next line of the protocol; progress reports on the way are passed on."""
        assert self._process.stdout is not None
        while True:
            line = await self._process.stdout.readline()
            if not line:
                raise WorkerFailed(f"the load generator (pid {self._process.pid}) exited early; see its stderr")
            if not line.startswith(b'{"progress":'):
                return line
            self._progress(int(orjson.loads(line)["progress"]))


async def _serve_one() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    spec = LoadSpec.from_json(orjson.loads(await reader.readline()))

    async def ready() -> None:
        _emit({"ready": True})
        if (await reader.readline()).strip() != b"go":
            raise WorkerFailed("expected 'go' from the bench")

    async def held() -> None:
        _emit({"held": True})
        if (await reader.readline()).strip() != b"release":
            raise WorkerFailed("expected 'release' from the bench")

    async with asyncio.timeout(spec.setup_timeout + spec.deadline + _MARGIN):
        result = await run_spec(spec, ready, held, lambda count: _emit({"progress": count}))
    _emit(result.to_json(histogram=True))


def _emit(document: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(document) + b"\n")
    sys.stdout.buffer.flush()


def main() -> int:
    raise_open_files_limit()  # an idle run holds thousands of connections
    runtime.run(_serve_one())
    return 0


if __name__ == "__main__":
    sys.exit(main())
