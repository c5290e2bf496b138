"""Migration 0006 on a database that has telemetry: ts_kv's shared monthly partitions become
partitions of each project's, every row moved to its device's project."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from fleetgate.core.telemetry_model import KeyValue, Reading, TelemetryMessage, ValueType
from fleetgate.storage.database import open_pool
from fleetgate.storage.migrate import available, migrate
from fleetgate.storage.partitions import month_bounds
from fleetgate.storage.telemetry import KeyDictionary, TelemetryWriter
from fleetgate.storage.telemetry_queries import TelemetryQueryStore

JAN, FEB, MAR = (month_bounds(2026, m)[0] for m in (1, 2, 3))


@pytest.fixture
async def at_0005(database_url: str) -> AsyncIterator[str]:
    """The URL of a database of its own, migrated up to 0005 (ts_kv's months shared by projects)."""
    name = "migration_" + secrets.token_hex(4)
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(database_url)._replace(path="/" + name))
    conn = await asyncpg.connect(url)
    try:
        # As storage.migrate records them, stopping before 0006.
        await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        for version, migration, sql in available():
            if version <= 5:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, migration)
        yield url
    finally:
        await conn.close()
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def old_layout(conn: asyncpg.Connection) -> None:
    """Projects a and b with a device each, rows in two shared months, and rows of a device
    deleted since (ts_kv has no foreign key)."""
    for project in ("a", "b"):
        await conn.execute("INSERT INTO projects (id, name, created_at) VALUES ($1, $1, 0)", project)
        await conn.execute("INSERT INTO products (id, project_id, name, created_at) VALUES ($1, $2, 'p', 0)",
                           "product-" + project, project)
        await conn.execute("INSERT INTO devices (id, project_id, product_id, name, created_at) "
                           "VALUES ($1, $2, $3, 'd', 0)", "dev-" + project, project, "product-" + project)
    await conn.execute("INSERT INTO key_dictionary (key) VALUES ('t'), ('cfg')")
    for year, month in ((2026, 1), (2026, 2)):
        lo, hi = month_bounds(year, month)
        await conn.execute(f"CREATE TABLE ts_kv_{year}_{month:02d} PARTITION OF ts_kv FOR VALUES FROM ({lo}) TO ({hi})")
    await conn.executemany(
        "INSERT INTO ts_kv (device_id, key, ts, long_v, dbl_v, json_v) VALUES ($1, $2, $3, $4, $5, $6::jsonb)", [
            ("dev-a", 1, JAN, 1, None, None),
            ("dev-a", 1, FEB - 1, None, 1.5, None),
            ("dev-a", 2, FEB, None, None, '{"x": [1]}'),
            ("dev-b", 1, FEB + 1, 7, None, None),
            ("dev-gone", 1, JAN, 9, None, None),
        ])


async def test_the_rows_move_to_their_projects_partitions(at_0005: str) -> None:
    conn = await asyncpg.connect(at_0005)
    try:
        await old_layout(conn)
        assert await migrate(conn) == [version for version, _, _ in available() if version >= 6]
        numbers = {r["id"]: r["no"] for r in await conn.fetch("SELECT id, no FROM projects")}
        a, b = numbers["a"], numbers["b"]
        assert a != b
        moved = [tuple(r) for r in await conn.fetch(
            "SELECT tableoid::regclass::text, device_id, key, ts, project_no, long_v, dbl_v, json_v::text FROM ts_kv "
            "ORDER BY device_id, key, ts")]
        assert moved == [
            (f"ts_kv_p{a}_2026_01", "dev-a", 1, JAN, a, 1, None, None),
            (f"ts_kv_p{a}_2026_01", "dev-a", 1, FEB - 1, a, None, 1.5, None),
            (f"ts_kv_p{a}_2026_02", "dev-a", 2, FEB, a, None, None, '{"x": [1]}'),
            (f"ts_kv_p{b}_2026_02", "dev-b", 1, FEB + 1, b, 7, None, None),
        ]
        tree = {r["name"]: (r["parent"], r["bound"]) for r in await conn.fetch(
            "SELECT relid::regclass::text AS name, parentrelid::regclass::text AS parent, "
            "pg_get_expr(c.relpartbound, c.oid) AS bound "
            "FROM pg_partition_tree('ts_kv') JOIN pg_class c ON c.oid = relid WHERE level > 0")}
        jan_lo, jan_hi = month_bounds(2026, 1)
        assert tree == {
            f"ts_kv_p{a}": ("ts_kv", f"FOR VALUES IN ({a})"),
            f"ts_kv_p{b}": ("ts_kv", f"FOR VALUES IN ({b})"),
            f"ts_kv_p{a}_2026_01": (f"ts_kv_p{a}", f"FOR VALUES FROM ('{jan_lo}') TO ('{jan_hi}')"),
            f"ts_kv_p{a}_2026_02": (f"ts_kv_p{a}", tree[f"ts_kv_p{a}_2026_02"][1]),
            f"ts_kv_p{b}_2026_02": (f"ts_kv_p{b}", tree[f"ts_kv_p{a}_2026_02"][1]),
        }
        # The old table and its partitions are gone; device_id still compares as bytes.
        assert await conn.fetchval("SELECT to_regclass('ts_kv_0005') IS NULL AND to_regclass('ts_kv_2026_01') IS NULL")
        assert await conn.fetchval("SELECT collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation "
                                   "WHERE a.attrelid = 'ts_kv'::regclass AND a.attname = 'device_id'") == "C"
        assert await migrate(conn) == []
        # A project made later is numbered after the others.
        later = await conn.fetchval("INSERT INTO projects (id, name, created_at) VALUES ('c', 'c', 0) RETURNING no")
        assert later > max(a, b)
    finally:
        await conn.close()


async def test_the_gateway_writes_and_reads_a_migrated_database(at_0005: str) -> None:
    conn = await asyncpg.connect(at_0005)
    try:
        await old_layout(conn)
    finally:
        await conn.close()
    pool = await open_pool(at_0005, 2)  # migrates
    try:
        writer = TelemetryWriter(pool, KeyDictionary())
        batch = [TelemetryMessage("dev-a", (Reading(FEB + 5, (KeyValue("t", ValueType.LONG, 3),)),
                                            Reading(MAR, (KeyValue("t", ValueType.LONG, 4),))))]
        await writer.write(batch, [])
        await writer.write(batch, [])  # again: the COPY meets the stored rows, the merge takes over
        a = await pool.fetchval("SELECT no FROM projects WHERE id = 'a'")
        assert [tuple(r) for r in await pool.fetch(
            "SELECT tableoid::regclass::text, ts, long_v FROM ts_kv WHERE device_id = 'dev-a' AND key = 1 ORDER BY ts")
        ] == [(f"ts_kv_p{a}_2026_01", JAN, 1), (f"ts_kv_p{a}_2026_01", FEB - 1, None),
              (f"ts_kv_p{a}_2026_02", FEB + 5, 3), (f"ts_kv_p{a}_2026_03", MAR, 4)]
        queries = TelemetryQueryStore(pool)
        assert [(v.key, v.ts, v.value) for v in await queries.latest("dev-a", None)] == [
            ("cfg", FEB, {"x": [1]}), ("t", MAR, 4)]
        assert [(v.key, v.ts, v.value) for v in await queries.latest("dev-b", None)] == [("t", FEB + 1, 7)]
        assert await queries.latest("dev-gone", None) == []
    finally:
        await pool.close()
