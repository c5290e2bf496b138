"""Debian's nats-server, started by a test: one node or a cluster on loopback, JetStream on, each in
a temporary directory on free ports. A node's readiness is awaited on its own log line; a cluster's,
on each node telling a client of the others once its routes to them are up.

nats-server says "Server is ready" once it listens for clients, and only then binds its route
port: a node whose route port was taken meanwhile (a port picked free can be, by any process
on the machine) logs a fatal error and exits after saying it was ready. A clustered node is
ready once it listens for routes, and a cluster that lost a node that way is started again on
other ports."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"

_READY_LINE = {False: "Server is ready", True: "Listening for route connections"}
_START_ATTEMPTS = 3

requires_nats_server = pytest.mark.skipif(
    not Path(NATS_SERVER).exists(), reason="nats-server is not installed (.ci/run installs Debian's package)")


@dataclass
class NatsNode:
    """One nats-server process; stop() and start() again keep its ports and its JetStream store."""

    name: str
    directory: Path
    port: int
    cluster_port: int
    routes: list[int]
    jetstream: bool
    process: asyncio.subprocess.Process | None = None
    log: list[str] = field(default_factory=list)
    _reader: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _config(self) -> str:
        lines = [f'server_name: "{self.name}"', "listen: 127.0.0.1:%d" % self.port]
        if self.jetstream:
            lines.append(f'jetstream {{ store_dir: "{self.directory / "js"}" }}')
        if self.routes:
            routes = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in self.routes)
            lines.append(f'cluster {{ name: "test", listen: "127.0.0.1:{self.cluster_port}", routes: [{routes}] }}')
        return "\n".join(lines) + "\n"

    async def start(self) -> None:
        config = self.directory / "nats.conf"
        config.write_text(self._config())
        self.process = await asyncio.create_subprocess_exec(
            NATS_SERVER, "-c", str(config), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(self.process, ready))
        try:
            async with asyncio.timeout(30):
                await ready
        except BaseException:
            await self.stop()
            raise

    async def _read(self, process: asyncio.subprocess.Process, ready: asyncio.Future) -> None:
        while line := await process.stderr.readline():
            text = line.decode(errors="replace")
            self.log.append(text)
            if _READY_LINE[bool(self.routes)] in text and not ready.done():
                ready.set_result(None)
        if not ready.done():
            ready.set_exception(RuntimeError(f"nats-server {self.name} exited: {''.join(self.log)[-2000:]}"))

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.send_signal(sig)
            await process.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None


@contextlib.asynccontextmanager
async def nats_cluster(directory: Path, nodes: int = 1, *, jetstream: bool = True) -> AsyncIterator[list[NatsNode]]:
    """``nodes`` servers (one is a plain server, more form a cluster), stopped on exit."""
    for attempt in range(_START_ATTEMPTS):
        cluster = _nodes(directory, nodes, jetstream)
        started = await asyncio.gather(*(node.start() for node in cluster), return_exceptions=True)
        failed = [result for result in started if isinstance(result, BaseException)]
        if not failed:
            break
        await asyncio.gather(*(node.stop() for node in cluster), return_exceptions=True)
        if attempt == _START_ATTEMPTS - 1:
            raise failed[0]
    try:
        if nodes > 1:
            async with asyncio.timeout(30):
                await asyncio.gather(*(_routed(node, nodes - 1) for node in cluster))
        yield cluster
    finally:
        await asyncio.gather(*(node.stop() for node in cluster), return_exceptions=True)


def _nodes(directory: Path, nodes: int, jetstream: bool) -> list[NatsNode]:
    ports = [(free_port(), free_port()) for _ in range(nodes)]
    cluster = []
    for index, (port, cluster_port) in enumerate(ports):
        node_dir = directory / f"nats-{index}"
        node_dir.mkdir(parents=True, exist_ok=True)
        routes = [other for _, other in ports if other != cluster_port] if nodes > 1 else []
        cluster.append(NatsNode(f"n{index}", node_dir, port, cluster_port, routes, jetstream))
    return cluster


async def _routed(node: NatsNode, peers: int) -> None:
    """Return once ``node`` has routes to ``peers`` others. "Server is ready" comes before the
    routes: a route refused while its peer was still starting is retried a second later, and
    until then a message published on one node does not reach a subscriber on the other. The
    server announces each routed peer's client URL to its clients (connect_urls)."""
    import nats

    found = asyncio.Event()
    client = None

    async def discovered() -> None:
        if client is not None and len(client.discovered_servers) >= peers:
            found.set()

    client = await nats.connect(node.url, dont_randomize=True, allow_reconnect=False, connect_timeout=10,
                                discovered_server_cb=discovered)
    try:
        await discovered()
        await found.wait()
    finally:
        await client.close()
