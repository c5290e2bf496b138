"""Command-line clients (mosquitto_pub/sub/rr, aiocoap-client, coap-client) run as real processes:
start one, run one to its end, read what it prints up to a marker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def started(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A client process (stdout and stderr merged), killed by its PID if still running at the end."""
    process = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def run(*args: str, timeout: float = 20) -> tuple[int, str]:
    async with started(*args) as process:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    return process.returncode, output.decode(errors="replace")


async def read_until(process: asyncio.subprocess.Process, marker: str, timeout: float = 10) -> list[str]:
    """The lines printed up to and including the first one containing ``marker`` (case-insensitive)."""
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            raw = await process.stdout.readline()
            if not raw:
                raise AssertionError(f"exited ({await process.wait()}) before {marker!r}: {lines}")
            lines.append(raw.decode(errors="replace").rstrip("\n"))
            if marker.lower() in lines[-1].lower():
                return lines


async def mosquitto_pub(gw: Any, server_cert: str, *args: str, message: bytes = b'{"over_tls":1}') -> tuple[int, str]:
    """One QoS 1 telemetry message to the gateway's MQTTS listener with mosquitto_pub; (exit code, output)."""
    port = next(listener.url for listener in gw.listeners if listener.name == "mqtts").rsplit(":", 1)[1]
    return await run("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "--cafile", server_cert, "-q", "1",
                     "-t", "v1/devices/me/telemetry", "-m", message.decode(), *args, timeout=15)
