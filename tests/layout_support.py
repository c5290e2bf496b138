"""What the telemetry layout tests share: a database of their own (a conversion and retention
act on the whole of ts_kv), and rows of two projects over three months."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from fleetgate.storage.database import open_pool
from fleetgate.storage.partitions import month_bounds

# Three months of rows, the fixed "now" of tests/retention_support.py after them.
MONTHS = [month_bounds(2099, 6)[0], month_bounds(2100, 6)[0], month_bounds(2100, 12)[0]]


@dataclass(frozen=True)
class Database:
    url: str
    pool: asyncpg.Pool


@pytest.fixture
async def fresh(gateway, database_url) -> AsyncIterator[Database]:
    """A migrated database of its own on the suite's server."""
    name = "layout_" + secrets.token_hex(4)
    await gateway.services.pool.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(database_url)._replace(path="/" + name))
    pool = await open_pool(url, 2)
    try:
        yield Database(url, pool)
    finally:
        await pool.close()
        await gateway.services.pool.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def key_id(pool: asyncpg.Pool, key: str) -> int:
    return await pool.fetchval(
        "INSERT INTO key_dictionary (key) VALUES ($1) ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key "
        "RETURNING key_id", key)


async def put_rows(pool: asyncpg.Pool, partitions, project_no: int, device_id: str, key: int, *timestamps: int) -> None:
    """Rows of every value type, their partitions made by the writer's own ``partitions``."""
    await partitions.ensure(pool, {(project_no, ts) for ts in timestamps})
    rows = []
    for n, ts in enumerate(timestamps):
        typed = [None] * 5
        typed[n % 5] = [n % 2 == 0, n, n + 0.5, f"s{n}", f'{{"n": {n}}}'][n % 5]
        rows.append((device_id, key, ts, project_no, *typed))
    await pool.executemany(
        "INSERT INTO ts_kv (device_id, key, ts, project_no, bool_v, long_v, dbl_v, str_v, json_v) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", rows)


async def partition_tree(pool: asyncpg.Pool) -> dict[str, int]:
    """ts_kv's partitions -> their level (1: under ts_kv)."""
    return {r["name"]: r["level"] for r in await pool.fetch(
        "SELECT relid::regclass::text AS name, level FROM pg_partition_tree('ts_kv') WHERE level > 0")}
