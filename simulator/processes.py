"""Servers under test as child processes: started, awaited until listening, stopped by SIGTERM.

A server is ready when it prints its ``http: URL`` line (``iot-gateway serve``
and ``simulator.baseline`` both do); the line is awaited, never polled for.
Its stderr goes to a log file whose tail is shown if it fails to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_READY_TIMEOUT = 120.0
_STOP_TIMEOUT = 60.0


class ServerFailed(Exception):
    """A server process exited or did not get ready."""


@dataclass(frozen=True, slots=True)
class RunningServer:
    name: str
    pid: int
    url: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (another process could take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def server_process(
    name: str, argv: Sequence[str], *, log_file: Path, env: Mapping[str, str] | None = None,
    ready_prefix: str = "http:",
) -> AsyncIterator[RunningServer]:
    """Run ``argv`` until the block ends, then SIGTERM it (by its PID) and wait for it."""
    with log_file.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
            env=dict(env) if env is not None else None,
        )
    assert process.stdout is not None
    drain: asyncio.Task[None] | None = None
    try:
        try:
            async with asyncio.timeout(_READY_TIMEOUT):
                url = await _ready_line(process.stdout, ready_prefix)
        except TimeoutError:
            raise ServerFailed(f"{name} did not print its {ready_prefix!r} line; {_tail(log_file)}") from None
        if url is None:
            await process.wait()
            raise ServerFailed(f"{name} exited with status {process.returncode}; {_tail(log_file)}")
        # Nothing more is expected on stdout, but a full pipe must never block the server.
        drain = asyncio.create_task(_discard(process.stdout), name=f"{name}-stdout")
        yield RunningServer(name, process.pid, url)
    finally:
        await _stop(process)
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)


async def _ready_line(stdout: asyncio.StreamReader, prefix: str) -> str | None:
    while line := await stdout.readline():
        text = line.decode(errors="replace").strip()
        if text.startswith(prefix):
            return text[len(prefix) :].strip()
    return None


async def _discard(stdout: asyncio.StreamReader) -> None:
    while await stdout.read(65_536):
        pass


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _tail(log_file: Path, lines: int = 20) -> str:
    try:
        text = log_file.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return "no log"
    return f"last lines of {log_file}:" + "".join(f"\n  {line}" for line in text) if text else "its log is empty"


def child_environment(overrides: Mapping[str, str], drop_prefix: str) -> dict[str, str]:
    """This process's environment without ``drop_prefix*`` variables, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefix)}
    env.update(overrides)
    return env
