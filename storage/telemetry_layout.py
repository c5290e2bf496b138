"""The two layouts of ts_kv, and which one a database has.

``project-month`` (migration 0006, the default): LIST by project number, each project's
partition RANGE by month. A project's time-to-live is a DROP TABLE of its expired months:
the better layout on one PostgreSQL.

``month``: one level, RANGE on ts by month (``ts_kv_YYYY_MM``). This is what Citus can
distribute (it takes one level of partitioning, not two) and what TimescaleDB's migration
path starts from; per-project time-to-live becomes row deletes (storage/retention_month.py).

The layout is a property of the database, read from ts_kv's partition key, so no setting can
contradict it: the ``telemetry_layout`` setting only chooses it for a database whose ts_kv is
still empty; ``iot-gateway admin telemetry-layout`` converts one that is not (both in
storage/layout_conversion.py).
"""

from __future__ import annotations

import enum

import asyncpg

CONVERT_COMMAND = "iot-gateway admin telemetry-layout"


class Layout(enum.StrEnum):
    PROJECT_MONTH = "project-month"
    MONTH = "month"


_PARTITION_KEYS = {"LIST (project_no)": Layout.PROJECT_MONTH, "RANGE (ts)": Layout.MONTH}


async def current_layout(conn: asyncpg.Pool | asyncpg.Connection, table: str = "ts_kv") -> Layout:
    key = await conn.fetchval("SELECT pg_get_partkeydef(to_regclass($1))", table)
    try:
        return _PARTITION_KEYS[key]
    except KeyError:
        raise RuntimeError(f"{table} is partitioned by {key}, which is neither telemetry layout") from None


async def live_gateways(conn: asyncpg.Pool | asyncpg.Connection) -> int:
    """Gateway processes whose lease runs: each may be writing to ts_kv."""
    return int(await conn.fetchval(
        "SELECT count(*) FROM gateway_processes WHERE lease_until > (extract(epoch FROM now()) * 1000)::bigint"))

