"""One Debian nats-server on loopback for a measurement, started and stopped by it."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fleetgate.simulator.processes import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


@dataclass(frozen=True, slots=True)
class NatsServer:
    url: str
    pid: int


@contextlib.asynccontextmanager
async def nats_server() -> AsyncIterator[NatsServer]:
    """A nats-server on a free port, once it says it is ready; stopped on exit."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(30):
            while b"Server is ready" not in (line := await process.stderr.readline()):
                if not line:
                    raise RuntimeError("nats-server exited")
        drain = asyncio.create_task(process.stderr.read())
        yield NatsServer(f"nats://127.0.0.1:{port}", process.pid)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        if drain is not None:
            await drain
