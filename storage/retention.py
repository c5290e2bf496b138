"""Retention of telemetry (per project) and of the audit log.

ts_kv is partitioned by month and a partition holds every project's rows, so a
partition is dropped only when it is expired for every project: its upper bound
lies before the cutoff (now minus time-to-live) of the project keeping data the
longest. A project with a shorter time-to-live does not wait for that: its
expired rows in partitions that must stay are deleted, in bounded batches.
A project keeping telemetry forever (TTL 0) means no partition is ever dropped.

One process enforces at a time (an advisory lock), whatever the replica count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from storage.errors import translated

_LOCK_KEY = 0x7A_B1_E6
_DAY_MS = 86_400_000
_DELETE_BATCH = 10_000
_PARTITION = re.compile(r"ts_kv_\d{4}_\d{2}")


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    partitions_dropped: tuple[str, ...] = ()
    telemetry_rows_deleted: int = 0
    audit_rows_deleted: int = 0
    skipped: bool = False  # another process held the lock


class RetentionStore:
    def __init__(self, pool: asyncpg.Pool, default_ttl_days: int, audit_retention_days: int) -> None:
        self._pool = pool
        self._default_ttl_days = default_ttl_days
        self._audit_days = audit_retention_days

    async def enforce(self, now_ms: int) -> RetentionOutcome:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_KEY):
                    return RetentionOutcome(skipped=True)
                dropped, deleted = await self._telemetry(conn, now_ms)
                audit = await self._audit(conn, now_ms)
        return RetentionOutcome(dropped, deleted, audit)

    async def _telemetry(self, conn: asyncpg.Connection, now_ms: int) -> tuple[tuple[str, ...], int]:
        ttls = [
            (r["id"], r["ttl"]) for r in await conn.fetch(
                "SELECT id, coalesce(telemetry_ttl_days, $1) AS ttl FROM projects", self._default_ttl_days)
        ]
        if not ttls:
            return (), 0
        partitions = await _partitions(conn)
        keeps_forever = any(ttl == 0 for _, ttl in ttls)
        longest_cutoff = now_ms - max(ttl for _, ttl in ttls) * _DAY_MS
        dropped = []
        for name, _, upper in partitions:
            if not keeps_forever and upper <= longest_cutoff:
                await conn.execute(f"DROP TABLE {name}")
                dropped.append(name)
        deleted = 0
        for project_id, ttl in ttls:
            if ttl == 0:
                continue
            cutoff = now_ms - ttl * _DAY_MS
            for name, lower, _ in partitions:
                if name in dropped or lower >= cutoff:
                    continue
                deleted += await _delete_expired(conn, name, project_id, cutoff)
        return tuple(dropped), deleted

    async def _audit(self, conn: asyncpg.Connection, now_ms: int) -> int:
        if self._audit_days == 0:
            return 0
        status = await conn.execute("DELETE FROM audit_log WHERE ts < $1", now_ms - self._audit_days * _DAY_MS)
        return int(status.split()[-1])


async def _partitions(conn: asyncpg.Connection) -> list[tuple[str, int, int]]:
    """ts_kv's partitions as (name, lower bound, upper bound), bounds in Unix milliseconds."""
    rows = await conn.fetch(
        """SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'ts_kv'::regclass ORDER BY c.relname""")
    found = []
    for r in rows:
        bounds = re.findall(r"'?(-?\d+)'?", r["bound"])
        if _PARTITION.fullmatch(r["name"]) and len(bounds) == 2:
            found.append((r["name"], int(bounds[0]), int(bounds[1])))
    return found


async def _delete_expired(conn: asyncpg.Connection, partition: str, project_id: str, cutoff: int) -> int:
    """The project's rows older than ``cutoff`` in one partition, a batch at a time."""
    total = 0
    while True:
        status = await conn.execute(
            f"""DELETE FROM {partition} WHERE ctid = ANY(ARRAY(
                    SELECT t.ctid FROM {partition} t JOIN devices d ON d.id = t.device_id
                    WHERE d.project_id = $1 AND t.ts < $2 LIMIT {_DELETE_BATCH}))""",
            project_id, cutoff)
        count = int(status.split()[-1])
        total += count
        if count < _DELETE_BATCH:
            return total


async def set_telemetry_ttl(pool: asyncpg.Pool, project_id: str, days: int | None) -> bool:
    """A project's own time-to-live (None: the gateway's default). False when no such project."""
    with translated():
        status = await pool.execute("UPDATE projects SET telemetry_ttl_days = $2 WHERE id = $1", project_id, days)
    return status != "UPDATE 0"
