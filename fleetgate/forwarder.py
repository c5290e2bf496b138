"""``iot-gateway forward``: data forwarding's delivery in a process of its own.

It opens the storage and runs only the forwarding runtime: workers for every active action, the
LISTEN connection (rule changes, and the announcements of gateway processes that write outbox
rows without delivering them), the backlog's measure and bound, the dead-letter moves. No device
front-end and no management API: /healthz, /readyz and /metrics on a small listener of its own
(``forward_port``), so that it can run as a Kubernetes Deployment of its own. ``serve`` with
``forwarding_process`` runs one under its supervisor (fleetgate.workers), without that listener:
its metrics go to the shared multiprocess directory, and the gateway's /metrics shows them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import asyncpg

from fleetgate.config import Settings
from fleetgate.core import metrics
from fleetgate.core.health import Readiness
from fleetgate.core.tasks import OwnedTasks
from fleetgate.forwarding_runtime import ForwardingRuntime
from fleetgate.protocols.http.server import HttpServer, build_app
from fleetgate.runner import run_async
from fleetgate.storage.database import open_pool, ping

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]


class ForwarderProcess:
    def __init__(self, settings: Settings, url: str, health: Health | None = None) -> None:
        # This process is the one that delivers, whatever serve's processes are told.
        self.settings = dataclasses.replace(settings, forwarding_process=False)
        self._url = url
        self._health = health
        self._pool: asyncpg.Pool | None = None
        self._http: HttpServer | None = None
        self._tasks = OwnedTasks()
        self.runtime: ForwardingRuntime | None = None
        self.listeners: list[str] = []

    async def start(self) -> None:
        s = self.settings
        self._pool = pool = await open_pool(self._url, s.db_pool_size)
        self.runtime = ForwardingRuntime(s, self._url, pool)
        await self.runtime.start()
        if metrics.MULTIPROCESS:
            self._tasks.spawn(metrics.flush_every_second())
        if s.forward_port:
            readiness = Readiness(database=lambda: ping(pool), queue_saturated=lambda: False, listening=lambda: True)
            self._http = HttpServer(build_app([], s.max_payload_bytes, readiness.report, self._health))
            port = await self._http.start(s.host, s.forward_port)
            shown = "127.0.0.1" if s.host in ("0.0.0.0", "") else s.host
            self.listeners.append(f"forward: http://{shown}:{port}")

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop_accepting()
        if self.runtime is not None:
            await self.runtime.stop()
        if self._http is not None:
            await self._http.close()
        if self._pool is not None:
            await self._pool.close()
        await self._tasks.finish()
        if metrics.MULTIPROCESS:
            metrics.flush()



def run_forwarder(settings: Settings, *, supervised: bool) -> int:
    """The command's whole life; ``supervised``: started by serve's supervisor (it says when ready)."""
    from fleetgate import workers
    from fleetgate.storage_wiring import database_url

    if settings.forwarding_workers_per_action < 1:
        print("iot-gateway: forward needs forwarding_workers_per_action of 1 or more: with 0 it would deliver "
              "nothing", file=sys.stderr)
        return 2
    url = database_url(settings)
    if settings.forwarding_nice:
        # Delivery waits, ingestion does not: when the CPU is short, the gateway and PostgreSQL
        # come first, and the backlog grows on disk until there is room again.
        os.nice(settings.forwarding_nice)
    if not supervised:
        print(f"database: {'embedded PostgreSQL in ' + settings.data_dir if settings.embedded_database else 'configured'}",
              flush=True)
    forwarder = ForwarderProcess(settings, url, health=(lambda: workers.worker_health(settings.data_dir)) if supervised
                          else None)

    async def forward() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor passes SIGHUP on: nothing to reload
        try:
            await forwarder.start()
            for line in forwarder.listeners:
                print(line, flush=True)
            if supervised:
                print(workers.READY_LINE, flush=True)
            await stop.wait()
        finally:
            await forwarder.stop()

    run_async(forward(), settings.event_loop)
    return 0
