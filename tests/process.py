"""A gateway in a process of its own (``python -m gateway serve``), as operators run it:
for the signal tests. Its database is the tests' PostgreSQL, which outlives it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.support import TEST_SECRETS_KEY

_ROOT = Path(__file__).resolve().parents[1]


class GatewayProcess:
    def __init__(self, proc: asyncio.subprocess.Process, listeners: dict[str, str]) -> None:
        self.proc = proc
        self.listeners = listeners
        self.log: list[str] = []
        self._logged = asyncio.Condition()
        self._reader = asyncio.create_task(self._read_stderr())

    @classmethod
    async def start(cls, database_url: str, data_dir: str, **settings: object) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(GATEWAY_DATABASE_URL=database_url, GATEWAY_DATA_DIR=data_dir, GATEWAY_HOST="127.0.0.1",
                   GATEWAY_HTTPS_PORT="0", GATEWAY_MQTTS_PORT="0", GATEWAY_COAP_PORT="0", GATEWAY_HTTP_PORT="0",
                   # The test run's gateways share one database, so they share the key sealing its secrets.
                   GATEWAY_SECRETS_KEY_FILE=TEST_SECRETS_KEY)
        env.update({f"GATEWAY_{k.upper()}": str(v) for k, v in settings.items()})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleetgate", "serve", env=env, cwd=_ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        listeners: dict[str, str] = {}
        async with asyncio.timeout(60):
            while "management" not in listeners:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    err = (await proc.stderr.read()).decode()
                    raise RuntimeError(f"the gateway exited while starting: {err[-2000:]}")
                name, _, url = line.strip().partition(": ")
                if url.startswith(("http", "mqtt")):
                    listeners[name] = url
        return cls(proc, listeners)

    def port(self, name: str) -> int:
        return int(self.listeners[name].rsplit(":", 1)[1])

    async def _read_stderr(self) -> None:
        while line := await self.proc.stderr.readline():
            async with self._logged:
                self.log.append(line.decode())
                self._logged.notify_all()

    async def logged(self, text: str, timeout: float = 10) -> str:
        """The first log line containing ``text``, once it is written."""
        async with asyncio.timeout(timeout), self._logged:
            await self._logged.wait_for(lambda: any(text in line for line in self.log))
        return next(line for line in self.log if text in line)

    def count(self, text: str) -> int:
        """How many log lines so far contain ``text``."""
        return sum(text in line for line in self.log)

    async def logged_times(self, text: str, times: int, timeout: float = 10) -> None:
        """Return once ``times`` log lines contain ``text``."""
        async with asyncio.timeout(timeout), self._logged:
            await self._logged.wait_for(lambda: self.count(text) >= times)

    async def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
