"""A client SDK driven as a script in its own virtual environment: JSON commands in, JSON events out.

The test writes one JSON command a line to the script's stdin ({"do": "connect", ...}),
the script calls the SDK and prints one JSON event a line on stdout as things happen
(its callbacks included), so the test can act at the right moment. The SDK's own log
goes to stderr, read as it comes and kept for the end. Every wait is bounded on both
sides: the test kills the script (by its PID) when the block ends, and the script ends
itself after the time limit it is given as its first argument.
"""

from __future__ import annotations

import asyncio
import json
import os
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

EVENT_TIMEOUT = 30.0  # seconds the test waits for one event


class ScriptClient:
    """One running script: send commands, await its events, read its log at the end."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        assert process.stderr is not None
        # Read the log as it comes, so that a chatty SDK never blocks on a full pipe.
        self.log_reader = asyncio.ensure_future(process.stderr.read())
        self.log = ""

    async def send(self, do: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps({"do": do, **fields}) + b"\n")
        await self.process.stdin.drain()

    async def event(self, name: str, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next event called ``name`` (earlier events of other names are kept in ``events``)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError(f"the SDK script ended ({await self.process.wait()}) before {name!r}; "
                                         f"events: {self.events}")
                event = json.loads(line)
                self.events.append(event)
                if event["event"] == name:
                    return event

    async def call(self, do: str, event: str, **fields: Any) -> dict[str, Any]:
        await self.send(do, **fields)
        return await self.event(event)

    async def finish(self) -> str:
        """Exit, and the SDK's log."""
        await self.send("exit")
        assert self.process.stdin is not None
        self.process.stdin.close()
        async with asyncio.timeout(EVENT_TIMEOUT):
            await self.process.wait()
            self.log = (await self.log_reader).decode(errors="replace")
        assert self.process.returncode == 0, self.log
        return self.log


@asynccontextmanager
async def running_script(
    python: Path, script: Path, limit: float, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> AsyncIterator[ScriptClient]:
    """``python script limit`` until the block ends, killed by its PID if still running then
    (its log is then in ``log``); ``env``: more environment variables."""
    process = await asyncio.create_subprocess_exec(
        str(python), str(script), str(limit),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", **(env or {})}, cwd=cwd,
    )
    client = ScriptClient(process)
    try:
        yield client
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if not client.log:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    client.log = (await client.log_reader).decode(errors="replace")
        client.log_reader.cancel()
