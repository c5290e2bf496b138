"""ts_kv's partitions, created on demand as rows arrive: one per project
(``ts_kv_p{no}``, LIST by project number), each split by month (``ts_kv_p{no}_{YYYY}_{MM}``,
RANGE by ts). Migration 0006 says why. The one-level ``month`` layout's partitions are made by
storage/month_partitions.py, under the same rule below.

Making or dropping a partition takes an ACCESS EXCLUSIVE lock on its parent, and a COPY
into ts_kv locks the partitions it routes rows to as it meets them. With two levels, a
transaction making (or dropping) months of two projects could hold one project's
partition while a COPY holds the other's, each waiting for the other: a deadlock. So
whoever makes or drops partitions (here and storage/retention.py) first locks ts_kv
itself, which every COPY locks first too, as partition DDL on the one-level table did:
writers wait those few milliseconds at the door instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Set as AbstractSet
from datetime import UTC, datetime

import asyncpg

_LOCK_KEY = 0x7A_B1_E5
LOCK_TS_KV = "LOCK TABLE ONLY ts_kv IN ACCESS EXCLUSIVE MODE"


def month_of(ts_ms: int) -> tuple[int, int]:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return moment.year, moment.month


def month_bounds(year: int, month: int) -> tuple[int, int]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def project_table(project_no: int) -> str:
    return f"ts_kv_p{project_no}"


def month_table(project_no: int, year: int, month: int) -> str:
    return f"ts_kv_p{project_no}_{year:04d}_{month:02d}"


async def absent_tables(conn: asyncpg.Connection, names: Iterable[str]) -> set[str]:
    """Which of the tables ``names`` do not exist: a catalog lookup, no lock."""
    return set(await conn.fetchval(
        "SELECT coalesce(array_agg(n), '{}') FROM unnest($1::text[]) n WHERE to_regclass(n) IS NULL", list(names)))


class Partitions:
    """Remembers which (project, month) partitions exist, so the hot path asks nothing of PostgreSQL."""

    def __init__(self) -> None:
        # Month bounds -> the project numbers known to have that month. Few months are
        # ever known at once (those rows arrive for), so a scan of them is cheap.
        self._known: dict[tuple[int, int], set[int]] = {}

    def forget(self) -> None:
        """Retention dropped a partition: ask PostgreSQL again next time."""
        self._known.clear()

    def _covered(self, project_no: int, ts: int) -> bool:
        return any(lo <= ts < hi and project_no in made for (lo, hi), made in self._known.items())

    def cover(self, projects: AbstractSet[int], lowest: int, highest: int) -> bool:
        """Whether every project of ``projects`` has one known partition holding every
        timestamp from ``lowest`` to ``highest``: the check for a whole batch, without
        looking at each of its rows."""
        for (lo, hi), made in self._known.items():
            if lo <= lowest and highest < hi:
                return projects <= made
        return False

    async def ensure(self, pool: asyncpg.Pool, rows: AbstractSet[tuple[int, int]]) -> None:
        """Make the partitions that (project number, ts) pairs need."""
        missing = {(no, *month_of(ts)) for no, ts in rows if not self._covered(no, ts)}
        if not missing:
            return
        async with pool.acquire() as conn:
            # Usually they exist (made by another process, or before a forget()): then
            # no lock is taken at all.
            names = {month_table(*part): part for part in missing}
            absent = await absent_tables(conn, names)
            if absent:
                await _create(conn, sorted(names[name] for name in absent))
        for no, year, month in missing:
            self._known.setdefault(month_bounds(year, month), set()).add(no)


async def _create(conn: asyncpg.Connection, parts: list[tuple[int, int, int]]) -> None:
    async with conn.transaction():
        # Serialised across processes: concurrent CREATE ... PARTITION OF can collide.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(LOCK_TS_KV)
        # A project's partition before its months, which are partitions of it.
        for no in sorted({no for no, _, _ in parts}):
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {project_table(no)} PARTITION OF ts_kv "
                f"FOR VALUES IN ({no}) PARTITION BY RANGE (ts)"
            )
        for no, year, month in parts:
            lo, hi = month_bounds(year, month)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {month_table(no, year, month)} "
                f"PARTITION OF {project_table(no)} FOR VALUES FROM ({lo}) TO ({hi})"
            )
