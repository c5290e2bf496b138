"""Servers under test as child processes: started, awaited until listening, stopped by SIGTERM.

A server is ready when it has printed a ``NAME: URL`` line for each listener
asked for (``iot-gateway serve`` prints one per listener, ``simulator.baseline``
its ``http:`` one), or, for a server that prints no such line (mosquitto), the
line a ``ready_line`` function recognises. Lines are awaited, never polled for.
Its stderr, and its stdout after the ready lines, go to a log file whose tail is
shown if it fails to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit

_READY_TIMEOUT = 120.0
_LISTENER_GRACE = 10.0  # after a server's first listener line, for the others
_STOP_TIMEOUT = 60.0
_TICKS = os.sysconf("SC_CLK_TCK")
_N = TypeVar("_N", int, float)


class ServerFailed(Exception):
    """A server process exited or did not get ready."""


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A started server: ``url`` is its first listener's, ``urls`` all that were awaited by name."""

    name: str
    pid: int
    url: str
    urls: Mapping[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port

    def endpoint(self, listener: str) -> tuple[str, int]:
        """(host, port) of a named listener."""
        parts = urlsplit(self.urls[listener])
        assert parts.port is not None
        return parts.hostname or "127.0.0.1", parts.port


ReadyLine = Callable[[str], tuple[str, str] | None]


def listener_line(line: str) -> tuple[str, str] | None:
    """``name: scheme://...`` as ``iot-gateway serve`` prints a listener, else None."""
    name, sep, url = line.partition(":")
    url = url.strip()
    if not sep or not name or " " in name or "://" not in url:
        return None
    return name, url


def resident_kib(pid: int) -> int:
    """A process's resident set size (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise OSError(f"no VmRSS for process {pid}")


def tree_resident_kib(pid: int) -> int:
    """VmRSS of a process and of its children (a gateway supervisor and its workers), in KiB."""
    return _tree_total(pid, resident_kib)


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and of its children so far, in seconds; OSError
    once the process itself has ended."""
    return _tree_total(pid, _cpu_seconds)


def _tree_total(pid: int, read: Callable[[int], _N]) -> _N:
    """``read`` of a process, plus ``read`` of each of its children still there."""
    total = read(pid)
    for child in _tree(pid)[1:]:
        try:
            total += read(child)
        except OSError:
            continue  # a process that ended meanwhile
    return total


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (IndexError, ValueError) as exc:
        raise OSError(f"no CPU times for process {pid}") from exc


def tree_proportional_kib(pid: int) -> int:
    """Pss of a process and of its children, in KiB: each page shared by n of them (the
    interpreter, the extension modules) counted 1/n in each, so the sum counts it once."""
    total = 0
    for member in _tree(pid):
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue  # a process that ended meanwhile
    return total


def _tree(pid: int) -> list[int]:
    """The process and its children."""
    members = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                members.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
    return members


def open_files_limit(pid: int | None = None) -> int:
    """The soft RLIMIT_NOFILE of a process (this one by default)."""
    if pid is None:
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return 1 << 30 if soft == "unlimited" else int(soft)
    raise OSError(f"no open files limit for process {pid}")


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now (another process could take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def server_process(
    name: str, argv: Sequence[str], *, log_file: Path, env: Mapping[str, str] | None = None,
    listeners: Sequence[str] = ("http",), ready_line: ReadyLine = listener_line, stderr_too: bool = False,
    grace: float = _LISTENER_GRACE,
) -> AsyncIterator[RunningServer]:
    """Run ``argv`` until the block ends, then SIGTERM it (by its PID) and wait for it.

    Ready once ``ready_line`` has named every one of ``listeners``: the first is
    awaited for up to two minutes (a gateway starts its database first), the
    others for a few seconds more (a server prints its listeners together).
    ``stderr_too``: its stderr is read with its stdout (for a server that logs
    its ready line to stderr: C's stdout is block-buffered on a pipe).
    """
    with log_file.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if stderr_too else log, env=dict(env) if env is not None else None,
        )
    assert process.stdout is not None
    drain: asyncio.Task[None] | None = None
    log = log_file.open("ab")
    try:
        urls: dict[str, str] = {}
        seen: list[str] = []
        for i, listener in enumerate(listeners):
            try:
                async with asyncio.timeout(_READY_TIMEOUT if i == 0 else grace):
                    ended = await _read_until(process.stdout, listener, ready_line, urls, seen, log)
            except TimeoutError:
                printed = f" (it printed: {', '.join(seen)})" if seen else ""
                raise ServerFailed(f"{name} printed no {listener} listener{printed}; {_tail(log_file)}") from None
            if ended:
                await process.wait()
                raise ServerFailed(f"{name} exited with status {process.returncode}; {_tail(log_file)}")
        # Nothing more is expected on stdout, but a full pipe must never block the server.
        drain = asyncio.create_task(_copy(process.stdout, log), name=f"{name}-stdout")
        yield RunningServer(name, process.pid, urls[listeners[0]], urls)
    finally:
        await _stop(process)
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
        log.close()


async def _read_until(
    stdout: asyncio.StreamReader, listener: str, ready_line: ReadyLine, urls: dict[str, str], seen: list[str],
    log: BinaryIO,
) -> bool:
    """Read lines until ``listener`` is in ``urls`` (True if stdout ended first)."""
    while listener not in urls:
        line = await stdout.readline()
        if not line:
            return True
        log.write(line)
        found = ready_line(line.decode(errors="replace").strip())
        if found is not None:
            urls.setdefault(found[0], found[1])
            seen.append(found[0])
    return False


async def _copy(stdout: asyncio.StreamReader, log: BinaryIO) -> None:
    while data := await stdout.read(65_536):
        log.write(data)
        log.flush()


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
