"""Retention of telemetry (per project) and of the audit log.

ts_kv is partitioned by project, then by month (migration 0006), so a project's
expired telemetry goes by DROP TABLE of its month partitions that end before its
cutoff (now minus its time-to-live): whole partitions, whatever other projects keep
of the same months. A project keeping telemetry forever (TTL 0) has none dropped. The
partitions of a project that no longer exists are dropped whole.

In the ``month`` layout (storage/telemetry_layout.py) months are shared by every project:
storage/retention_month.py drops them past the longest time-to-live and deletes the rows of
projects with a shorter one, in batches, after this transaction.

A time-to-live is honoured by the month, not by the day, and is a minimum: a month
goes once its last day is past the time-to-live, so a row is kept at least its
project's time-to-live and at most 31 days longer (a row of a month's first moment),
plus up to one retention interval. The partly expired month is not thinned out row by
row: a DELETE writes WAL for every row and leaves dead rows for vacuum, competing with
the writers, which is what partitions by project are there to avoid.

Persistent RPC calls that are over (SUCCESSFUL, TIMEOUT, EXPIRED, FAILED), and those past their
expiration time, are deleted once older than their time-to-live (ThingsBoard's rpcTtlDays): by the
time they were last updated, so a call answered late is kept its whole time-to-live after that.

One process enforces at a time (an advisory lock), whatever the replica count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from fleetgate.core.rpc_calls import RpcStatus
from fleetgate.storage.errors import translated
from fleetgate.storage.partitions import LOCK_TS_KV
from fleetgate.storage.retention_month import delete_expired_rows, drop_expired_months, longest_ttl
from fleetgate.storage.telemetry_layout import Layout, current_layout

_LOCK_KEY = 0x7A_B1_E6
_DAY_MS = 86_400_000
_PENDING_RPC = [s.value for s in RpcStatus if s.pending]
_PROJECT = re.compile(r"ts_kv_p(\d+)")
_MONTH = re.compile(r"ts_kv_p\d+_\d{4}_\d{2}")

# Both levels of ts_kv's partitions: a project's (level 1) and its months (level 2). From
# the catalog, not pg_partition_tree(), which locks every partition until the commit: a
# writer making a partition under its lock on ts_kv would then wait for this transaction
# while it waits for that lock.
_TREE = """SELECT c.relname AS name, CASE WHEN i.inhparent = 'ts_kv'::regclass THEN 1 ELSE 2 END AS level,
                  parent.relname AS parent, pg_get_expr(c.relpartbound, c.oid) AS bound
           FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class parent ON parent.oid = i.inhparent
           WHERE i.inhparent = 'ts_kv'::regclass
              OR i.inhparent IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'ts_kv'::regclass)"""


@dataclass(frozen=True, slots=True)
class RetentionOutcome:
    partitions_dropped: tuple[str, ...] = ()
    audit_rows_deleted: int = 0
    rpc_calls_deleted: int = 0
    skipped: bool = False  # another process held the lock
    telemetry_rows_deleted: int = 0  # rows of a shorter time-to-live, month layout


@dataclass(frozen=True, slots=True)
class _Month:
    name: str
    project_no: int
    lower: int
    upper: int


class RetentionStore:
    def __init__(
        self, pool: asyncpg.Pool, default_ttl_days: int, audit_retention_days: int, message_retention_days: int = 0,
        rpc_retention_days: int = 0,
    ) -> None:
        self._pool = pool
        self._default_ttl_days = default_ttl_days
        self._audit_days = audit_retention_days
        self._message_days = message_retention_days
        self._rpc_days = rpc_retention_days

    async def enforce(self, now_ms: int) -> RetentionOutcome:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_KEY):
                    return RetentionOutcome(skipped=True)
                # The audit log first: dropping partitions locks ts_kv until the commit,
                # and the writers should not wait for a long DELETE too.
                audit = await self._audit(conn, now_ms)
                if self._message_days:  # the device message log (IoTDA's messages and events)
                    await conn.execute("DELETE FROM device_messages WHERE created_at < $1",
                                       now_ms - self._message_days * _DAY_MS)
                rpc_calls = await self._rpc_calls(conn, now_ms)
                if (layout := await current_layout(conn)) is Layout.MONTH:
                    ttls = await self._ttls(conn)
                    longest = longest_ttl(ttls, self._default_ttl_days)
                    dropped = await drop_expired_months(conn, now_ms, longest)
                else:
                    dropped = await self._telemetry(conn, now_ms)
            rows = 0
            if layout is Layout.MONTH:  # outside the transaction above: each batch commits on its own
                rows = await delete_expired_rows(self._pool, now_ms, ttls, longest)
        return RetentionOutcome(dropped, audit, rpc_calls, telemetry_rows_deleted=rows)

    async def _ttls(self, conn: asyncpg.Connection) -> dict[int, int]:
        """Project number -> its time-to-live in days (0: forever)."""
        return {r["no"]: r["ttl"] for r in await conn.fetch(
            "SELECT no, coalesce(telemetry_ttl_days, $1) AS ttl FROM projects", self._default_ttl_days)}

    async def _telemetry(self, conn: asyncpg.Connection, now_ms: int) -> tuple[str, ...]:
        # Partitions before projects: a project's partition is made after the project
        # (it needs a device of the project), so each one listed has its project below
        # unless that project is gone.
        projects, months = await _partitions(conn)
        ttls = await self._ttls(conn)
        doomed = [name for no, name in sorted(projects.items()) if no not in ttls]
        for month in months:
            # None: the project is gone, its months go with its partition above. 0: forever.
            ttl = ttls.get(month.project_no)
            if ttl and month.upper <= now_ms - ttl * _DAY_MS:
                doomed.append(month.name)
        if doomed:
            # Writers COPY through ts_kv and lock the partitions they route rows to as they
            # go: locking ts_kv first keeps a drop from deadlocking with them
            # (storage/partitions.py). The lock is held until the commit, a few milliseconds.
            await conn.execute(LOCK_TS_KV)
            for name in doomed:
                await conn.execute(f"DROP TABLE IF EXISTS {name}")
        return tuple(doomed)

    async def _rpc_calls(self, conn: asyncpg.Connection, now_ms: int) -> int:
        if self._rpc_days == 0:
            return 0
        cutoff = now_ms - self._rpc_days * _DAY_MS
        # A call still pending but expired before the cutoff is over too: nothing sends it again.
        status = await conn.execute(
            """DELETE FROM rpc_calls WHERE (updated_at < $1 AND status <> ALL($2::text[])) OR expiration_time < $1""",
            cutoff, _PENDING_RPC)
        return int(status.split()[-1])

    async def _audit(self, conn: asyncpg.Connection, now_ms: int) -> int:
        if self._audit_days == 0:
            return 0
        status = await conn.execute("DELETE FROM audit_log WHERE ts < $1", now_ms - self._audit_days * _DAY_MS)
        return int(status.split()[-1])


async def _partitions(conn: asyncpg.Connection) -> tuple[dict[int, str], list[_Month]]:
    """ts_kv's project partitions (number -> name) and month partitions, oldest first,
    bounds in Unix milliseconds. Tables not named as the writer names them are left alone."""
    projects: dict[int, str] = {}
    months = []
    for r in await conn.fetch(_TREE):
        if r["level"] == 1:
            match = _PROJECT.fullmatch(r["name"])
            if match:
                projects[int(match[1])] = r["name"]
            continue
        parent = _PROJECT.fullmatch(r["parent"])
        bounds = re.findall(r"'?(-?\d+)'?", r["bound"])
        if parent and _MONTH.fullmatch(r["name"]) and len(bounds) == 2:
            months.append(_Month(r["name"], int(parent[1]), int(bounds[0]), int(bounds[1])))
    months.sort(key=lambda m: (m.project_no, m.lower))
    return projects, months


async def set_telemetry_ttl(pool: asyncpg.Pool, project_id: str, days: int | None) -> bool:
    """A project's own time-to-live (None: the gateway's default). False when no such project."""
    with translated():
        status = await pool.execute("UPDATE projects SET telemetry_ttl_days = $2 WHERE id = $1", project_id, days)
    return status != "UPDATE 0"
