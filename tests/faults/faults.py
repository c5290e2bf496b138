"""The faults, each done to processes this test started, by their PIDs."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg

from tests.pg_control import ControlledServer

# The writer's statements: the COPY of a batch, or the upsert that follows a unique violation.
_WRITER_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND datname = current_database()
  AND (query ILIKE 'COPY%ts_kv%' OR query ILIKE '%INSERT INTO ts_kv%')"""


def postgres_pids(server: ControlledServer) -> list[int]:
    """The postmaster (from postmaster.pid) and its children (from /proc)."""
    postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


async def freeze(server: ControlledServer, seconds: float) -> int:
    """SIGSTOP every process of the cluster for ``seconds``, then SIGCONT; how many were frozen."""
    pids = postgres_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)  # the freeze itself
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    return len(pids)


async def terminate_writers(url: str, seconds: float, every: float = 0.3) -> int:
    """pg_terminate_backend on the writer's backends, again and again for ``seconds``;
    how many backends were ended."""
    ended = 0
    conn = await asyncpg.connect(url)
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            for record in await conn.fetch(_WRITER_BACKENDS):
                ended += bool(await conn.fetchval("SELECT pg_terminate_backend($1)", record["pid"]))
            await asyncio.sleep(every)  # the fault's cadence
    finally:
        await conn.close()
    return ended
