"""ts_kv's partitions in the ``month`` layout (storage/telemetry_layout.py): one level,
``ts_kv_YYYY_MM`` by RANGE on ts, made on demand as rows arrive.

The same rule as the two-level layout (storage/partitions.py): whoever makes or drops a
partition locks ts_kv first, the table every COPY locks first, so that DDL never holds a
partition a COPY waits for while waiting for one the COPY holds.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import asyncpg

from fleetgate.storage.partitions import LOCK_TS_KV, absent_tables, month_bounds, month_of

# The same advisory lock as the two-level writer's: a database has one layout at a time, and
# the conversion (storage/layout_conversion.py) refuses to run beside live gateways.
_LOCK_KEY = 0x7A_B1_E5


def month_partition(year: int, month: int) -> str:
    return f"ts_kv_{year:04d}_{month:02d}"


class MonthPartitions:
    """Remembers which months exist, so the hot path asks nothing of PostgreSQL. The
    interface of storage/partitions.Partitions: project numbers are accepted and ignored."""

    def __init__(self) -> None:
        self._known: set[tuple[int, int]] = set()  # month bounds (lower, upper) in Unix ms

    def forget(self) -> None:
        """Retention dropped a partition: ask PostgreSQL again next time."""
        self._known.clear()

    def cover(self, projects: AbstractSet[int], lowest: int, highest: int) -> bool:
        return any(lo <= lowest and highest < hi for lo, hi in self._known)

    async def ensure(self, pool: asyncpg.Pool, rows: AbstractSet[tuple[int, int]]) -> None:
        """Make the month partitions that (project number, ts) pairs need."""
        missing = {month_of(ts) for _, ts in rows}
        missing = {m for m in missing if month_bounds(*m) not in self._known}
        if not missing:
            return
        async with pool.acquire() as conn:
            names = {month_partition(*m): m for m in missing}
            absent = await absent_tables(conn, names)
            if absent:
                await create_months(conn, sorted(names[name] for name in absent))
        self._known.update(month_bounds(*m) for m in missing)


async def create_months(conn: asyncpg.Connection, months: list[tuple[int, int]], parent: str = "ts_kv") -> None:
    async with conn.transaction():
        # Serialised across processes: concurrent CREATE ... PARTITION OF can collide.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(LOCK_TS_KV if parent == "ts_kv" else f"LOCK TABLE ONLY {parent} IN ACCESS EXCLUSIVE MODE")
        for year, month in months:
            lo, hi = month_bounds(year, month)
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {month_partition(year, month)} "
                               f"PARTITION OF {parent} FOR VALUES FROM ({lo}) TO ({hi})")
