"""Monthly partitions of ts_kv, created on demand as rows arrive."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

_LOCK_KEY = 0x7A_B1_E5


def month_of(ts_ms: int) -> tuple[int, int]:
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return moment.year, moment.month


def month_bounds(year: int, month: int) -> tuple[int, int]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class Partitions:
    """Remembers which monthly ranges exist, so the hot path asks nothing of PostgreSQL."""

    def __init__(self) -> None:
        self._known: list[tuple[int, int]] = []

    def forget(self) -> None:
        """Retention dropped a partition: ask PostgreSQL again next time."""
        self._known.clear()

    def _covered(self, ts: int) -> bool:
        return any(lo <= ts < hi for lo, hi in self._known)

    def cover(self, lowest: int, highest: int) -> bool:
        """Whether one known partition holds every timestamp from ``lowest`` to ``highest``:
        the check for a whole batch, without looking at each of its rows."""
        return any(lo <= lowest and highest < hi for lo, hi in self._known)

    async def ensure(self, pool: asyncpg.Pool, timestamps: set[int]) -> None:
        missing = {month_of(ts) for ts in timestamps if not self._covered(ts)}
        if not missing:
            return
        async with pool.acquire() as conn, conn.transaction():
            # Serialised across processes: concurrent CREATE ... PARTITION OF can collide.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            for year, month in sorted(missing):
                lo, hi = month_bounds(year, month)
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS ts_kv_{year:04d}_{month:02d} "
                    f"PARTITION OF ts_kv FOR VALUES FROM ({lo}) TO ({hi})"
                )
        for year, month in missing:
            self._known.append(month_bounds(year, month))
