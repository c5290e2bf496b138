"""Telemetry retention in the ``month`` layout (storage/telemetry_layout.py), where a month
partition holds every project's rows of that month.

Whole months are dropped once they end before now minus the LONGEST time-to-live of all
projects (none while any project keeps its telemetry forever): a drop is free, and frees the
space at once. A project with a shorter time-to-live has its older rows deleted, row by row,
in batches of ``BATCH_ROWS``, each its own short transaction, walking the partition's primary
key so that no batch reads what an earlier one deleted. That is the price of this layout: every
deleted row is written to the WAL and left for vacuum, where a drop costs neither; small batches
let autovacuum keep up and hold no lock for long (docs/scaling.md has a measured figure).
Unlike a drop, a delete is exact: a row goes as soon as it is older than its time-to-live.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from fleetgate.storage.partitions import LOCK_TS_KV

BATCH_ROWS = 10_000
_DAY_MS = 86_400_000
_DELETE_LOCK_KEY = 0x7A_B1_E8
_MONTH = re.compile(r"ts_kv_\d{4}_\d{2}")
_RANGE = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")
_PARTITIONS = """SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'ts_kv'::regclass"""
# Keyset by (device_id, key, ts): the batch after the last row of the one before, read in the
# primary key's order, then deleted by their ctid, unique within the one partition named: joining
# on the primary key again took 24 to 30 s a million rows against 2 to 5 s (docs/scaling.md,
# python -m fleetgate.retention_measure). Returns nothing once no expired row is left.
_BATCH = """WITH batch AS (
                SELECT device_id, key, ts, ctid FROM {part}
                WHERE (device_id, key, ts) > ($3, $4, $5) AND project_no = $1 AND ts < $2
                ORDER BY device_id, key, ts LIMIT $6),
            gone AS (DELETE FROM {part} WHERE ctid = ANY(ARRAY(SELECT ctid FROM batch)) RETURNING 1)
            SELECT (SELECT count(*) FROM gone) AS deleted, l.device_id, l.key, l.ts
            FROM (SELECT * FROM batch ORDER BY device_id DESC, key DESC, ts DESC LIMIT 1) l"""


@dataclass(frozen=True, slots=True)
class MonthPartition:
    name: str
    lower: int
    upper: int


async def month_partitions(conn: asyncpg.Connection | asyncpg.Pool) -> list[MonthPartition]:
    """ts_kv's month partitions, oldest first; tables not named as the writer names them are left alone."""
    found = []
    for r in await conn.fetch(_PARTITIONS):
        bounds = _RANGE.search(r["bound"] or "")
        if _MONTH.fullmatch(r["name"]) and bounds:
            found.append(MonthPartition(r["name"], int(bounds[1]), int(bounds[2])))
    return sorted(found, key=lambda m: m.lower)


def longest_ttl(ttls: Mapping[int, int], default_ttl_days: int) -> int:
    """Days every project's rows are kept at least; 0 when some project keeps them forever."""
    days = list(ttls.values()) or [default_ttl_days]
    return 0 if 0 in days else max(days)


async def drop_expired_months(conn: asyncpg.Connection, now_ms: int, longest_days: int) -> tuple[str, ...]:
    """In the caller's transaction: the months ending before now minus ``longest_days``."""
    if not longest_days:
        return ()
    cutoff = now_ms - longest_days * _DAY_MS
    doomed = tuple(m.name for m in await month_partitions(conn) if m.upper <= cutoff)
    if doomed:
        # As the writers lock ts_kv first, so does a drop (storage/partitions.py).
        await conn.execute(LOCK_TS_KV)
        for name in doomed:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
    return doomed


async def delete_expired_rows(pool: asyncpg.Pool, now_ms: int, ttls: Mapping[int, int], longest_days: int,
                              batch_rows: int = BATCH_ROWS) -> int:
    """Rows of the projects whose time-to-live is shorter than ``longest_days`` (any, if it is 0)
    and that are older than it; each batch commits on its own. Rows deleted."""
    shorter = {no: days for no, days in ttls.items() if days and (not longest_days or days < longest_days)}
    if not shorter:
        return 0
    deleted = 0
    async with pool.acquire() as conn:
        # One process deletes at a time; the others find the work done or under way.
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _DELETE_LOCK_KEY):
            return 0
        try:
            months = await month_partitions(conn)
            for no, days in sorted(shorter.items()):
                cutoff = now_ms - days * _DAY_MS
                for month in months:
                    if month.lower < cutoff:
                        deleted += await _delete_from(conn, month.name, no, cutoff, batch_rows)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _DELETE_LOCK_KEY)
    return deleted


async def _delete_from(conn: asyncpg.Connection, partition: str, project_no: int, cutoff: int, batch_rows: int) -> int:
    sql = _BATCH.format(part=partition)
    after: tuple[str, int, int] = ("", -(1 << 31), -(1 << 63))  # before every row: no device id is empty
    deleted = 0
    while True:
        try:
            row = await conn.fetchrow(sql, project_no, cutoff, *after, batch_rows)
        except asyncpg.UndefinedTableError:  # dropped meanwhile: its rows are gone anyway
            return deleted
        if row is None:
            return deleted
        deleted += row["deleted"]
        after = (row["device_id"], row["key"], row["ts"])
