"""``iot-gateway serve --workers N``: N gateway processes sharing every listening port.

Each worker is an ordinary ``serve`` process (its own event loop, ingest
batcher and connection pool) started with ``--worker-index I``; the listeners
bind with SO_REUSEPORT, so the kernel spreads new connections (and CoAP's
datagrams, by source) over the workers. Downlink reaches a device whichever
worker holds it through the downlink bus: PostgreSQL NOTIFY (storage.downlink_bus), or NATS
(storage.nats_bus) with nats_url.

The parent starts the embedded PostgreSQL and applies the migrations once,
empties the metrics directory (prometheus_client's multiprocess mode: see
gateway.metrics), starts the workers, waits until each has printed its
listeners, prints them once, and then supervises: SIGTERM, SIGINT and SIGHUP
are forwarded to every worker; a worker that exits when not asked to is
restarted after a back-off (1 s, doubling to 30 s, back to 1 s once a worker
has run for a minute); once asked to stop, it waits for every worker and exits
0 if all exited cleanly. Every change is written to ``workers/state.json`` in
the data directory, which each worker's /healthz reads to summarize them all.

With ``forwarding_process`` (even with one worker) the supervisor runs one more
child, ``iot-gateway forward`` (fleetgate.forwarder), supervised and restarted the
same way: the workers deliver nothing (fleetgate.forwarding_runtime), it delivers
every action, and its metrics are in the same directory, so every worker's
/metrics shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from fleetgate.config import Settings
from fleetgate.core.retry import Backoff
from fleetgate.runner import run_async

log = logging.getLogger(__name__)

READY_LINE = "worker: ready"
_BACKOFF_FIRST, _BACKOFF_MAX, _STABLE_S = 1.0, 30.0, 60.0
_READY_TIMEOUT = 120.0


def state_path(data_dir: str) -> Path:
    return Path(data_dir) / "workers" / "state.json"


def metrics_path(data_dir: str) -> Path:
    return Path(data_dir) / "workers" / "prometheus"


def worker_health(data_dir: str) -> tuple[bool, dict[str, Any]]:
    """For /healthz: every worker running? (read from the supervisor's state file)."""
    try:
        state = orjson.loads(state_path(data_dir).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False, {"workers": "no supervisor state"}
    gateway = [w for w in state["workers"] if w.get("role", "gateway") == "gateway"]
    forwarder = [{"pid": w["pid"], "state": w["state"]} for w in state["workers"] if w.get("role") == "forwarder"]
    running = sum(1 for w in gateway if w["state"] == "running")
    ok = running == state["count"] and all(f["state"] == "running" for f in forwarder) and not state["stopping"]
    return ok, {
        "workers": {"count": state["count"], "running": running, "restarts": state["restarts"],
                    "pids": [w["pid"] for w in gateway], "this": os.getpid()},
        **({"forwarder": forwarder[0]} if forwarder else {}),
    }


@dataclass(slots=True)
class _Worker:
    index: int
    forwarder: bool = False  # iot-gateway forward, not a gateway worker
    process: asyncio.subprocess.Process | None = None
    state: str = "starting"
    started_at: float = 0.0
    ready: asyncio.Future[list[str]] | None = None


@dataclass(slots=True)
class Supervisor:
    settings: Settings
    argv: Sequence[str]  # the serve command line, without the program
    database_url: str
    workers: list[_Worker] = field(default_factory=list)
    stopping: bool = False
    restarts: int = 0

    def _environment(self, worker: _Worker) -> dict[str, str]:
        env = dict(os.environ)
        env["GATEWAY_DATABASE_URL"] = self.database_url  # the parent's embedded server, started once
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_path(self.settings.data_dir))
        if worker.forwarder:
            # Its figures are on the workers' /metrics, its state on their /healthz: no listener of its own.
            env["GATEWAY_FORWARD_PORT"] = "0"
        return env

    def _command(self, worker: _Worker) -> list[str]:
        argv = list(self.argv)
        if worker.forwarder:
            argv[0] = "forward"  # the serve command line's settings, for the forward command
        return [sys.executable, "-m", "fleetgate", *argv, "--worker-index", str(worker.index)]

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self._signal, sig, stopped)
        self.workers = [_Worker(i) for i in range(self.settings.workers)]
        if self.settings.forwarding_process:
            self.workers.append(_Worker(self.settings.workers, forwarder=True))
        for worker in self.workers:
            worker.ready = loop.create_future()
        runs = [asyncio.create_task(self._keep(worker, stopped), name=f"worker-{worker.index}")
                for worker in self.workers]
        try:
            try:
                async with asyncio.timeout(_READY_TIMEOUT):
                    listeners = [await w.ready for w in self.workers if w.ready is not None]
            except (TimeoutError, RuntimeError) as exc:
                print(f"iot-gateway: the workers did not start: {exc}", file=sys.stderr, flush=True)
                self._signal(signal.SIGTERM, stopped)
                await asyncio.gather(*runs, return_exceptions=True)
                return 1
            gateway = [w for w in self.workers if not w.forwarder]
            print(f"workers: {len(gateway)} (pids {', '.join(str(w.process.pid) for w in gateway if w.process)})",
                  flush=True)
            for forwarder in (w for w in self.workers if w.forwarder and w.process):
                print(f"forwarder: pid {forwarder.process.pid}", flush=True)
            for line in listeners[0]:
                print(line, flush=True)
            results = await asyncio.gather(*runs)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return 0 if all(code == 0 for code in results) else 1

    def _signal(self, sig: int, stopped: asyncio.Event) -> None:
        if sig != signal.SIGHUP:
            self.stopping = True
            stopped.set()
            self._write_state()
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def _keep(self, worker: _Worker, stopped: asyncio.Event) -> int:
        """Run one worker until the supervisor stops; its last exit status."""
        backoff = Backoff(_BACKOFF_FIRST, _BACKOFF_MAX)
        while True:
            code = await self._run_once(worker)
            if self.stopping:
                return code
            if time.monotonic() - worker.started_at > _STABLE_S:
                backoff.reset()
            delay = backoff.next()
            # Each exit is its own event, not an outage: one warning each.
            log.warning("%s (pid %s) exited with status %s; restarting in %.0f s",
                        "the forwarder" if worker.forwarder else f"worker {worker.index}",
                        worker.process.pid if worker.process else "?", code, delay)
            worker.state = "restarting"
            self.restarts += 1
            self._write_state()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stopped.wait()
            if self.stopping:
                return 0

    async def _run_once(self, worker: _Worker) -> int:
        process = await asyncio.create_subprocess_exec(
            *self._command(worker),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, env=self._environment(worker),
        )
        worker.process, worker.state, worker.started_at = process, "starting", time.monotonic()
        assert process.stdout is not None
        listeners: list[str] = []
        while raw := await process.stdout.readline():
            line = raw.decode(errors="replace").rstrip("\n")
            if line == READY_LINE:
                worker.state = "running"
                self._write_state()
                if worker.ready is not None and not worker.ready.done():
                    worker.ready.set_result(listeners)
                break
            if "://" in line:
                listeners.append(line)
        copy = asyncio.create_task(_copy(process.stdout))
        code = await process.wait()
        await copy
        worker.state = "exited"
        self._write_state()
        _mark_dead(process.pid, self.settings.data_dir)
        if worker.ready is not None and not worker.ready.done():
            worker.ready.set_exception(RuntimeError(f"worker {worker.index} exited with status {code}"))
        return code

    def _write_state(self) -> None:
        path = state_path(self.settings.data_dir)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(orjson.dumps({
            "count": sum(1 for w in self.workers if not w.forwarder), "stopping": self.stopping,
            "restarts": self.restarts,
            "workers": [{"index": w.index, "pid": w.process.pid if w.process else None, "state": w.state,
                         "role": "forwarder" if w.forwarder else "gateway"} for w in self.workers],
        }))
        temporary.replace(path)


async def _copy(stdout: asyncio.StreamReader) -> None:
    while data := await stdout.read(65_536):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _mark_dead(pid: int, data_dir: str) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(metrics_path(data_dir)))


def prepare(settings: Settings) -> None:
    """An empty metrics directory and state directory for this run."""
    directory = metrics_path(settings.data_dir)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)


def serve_workers(settings: Settings, argv: Sequence[str]) -> int:
    """The supervisor's whole life: database and migrations once, then the workers."""
    from fleetgate.storage_wiring import database_url, open_services

    url = database_url(settings)

    async def migrate() -> None:  # opening the services applies the migrations
        await (await open_services(url, 2, settings)).pool.close()

    run_async(migrate())
    prepare(settings)
    print(f"database: {'embedded PostgreSQL in ' + settings.data_dir if settings.embedded_database else 'configured'}",
          flush=True)
    return int(run_async(Supervisor(settings, argv, url).run(), settings.event_loop))
