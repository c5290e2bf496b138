"""Retention: whole partitions dropped once expired for every project, a shorter
time-to-live's rows deleted from partitions that stay, old audit records deleted."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import pytest

from gateway.retention import Retention
from storage.partitions import month_bounds
from storage.database import open_pool
from storage.retention import RetentionStore, set_telemetry_ttl

DAY = 86_400_000
# A fixed "now", the months around it made by the tests.
NOW = int(datetime(2101, 1, 1, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
async def isolated(gateway, database_url):
    """A database of its own (same server): retention acts on every project and partition,
    so it must not see the other tests' data."""
    name = "retention_" + secrets.token_hex(4)
    await gateway.services.pool.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(database_url)
    pool = await open_pool(urlunsplit(parts._replace(path="/" + name)), 2)
    try:
        yield pool
    finally:
        await pool.close()
        await gateway.services.pool.execute(f"DROP DATABASE {name}")


async def project_with_device(pool, ttl_days: int | None) -> tuple[str, str]:
    project_id, product_id, device_id = (secrets.token_hex(12) for _ in range(3))
    await pool.execute("INSERT INTO projects (id, name, created_at, telemetry_ttl_days) VALUES ($1, $2, 0, $3)",
                       project_id, "ret-" + project_id, ttl_days)
    await pool.execute("INSERT INTO products (id, project_id, name, created_at) VALUES ($1, $2, 'p', 0)",
                       product_id, project_id)
    await pool.execute("INSERT INTO devices (id, project_id, product_id, name, created_at) VALUES ($1, $2, $3, 'd', 0)",
                       device_id, project_id, product_id)
    return project_id, device_id


async def month_partition(pool, year: int, month: int) -> str:
    lo, hi = month_bounds(year, month)
    name = f"ts_kv_{year:04d}_{month:02d}"
    await pool.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF ts_kv FOR VALUES FROM ({lo}) TO ({hi})")
    return name


async def put(pool, device_id: str, *timestamps: int) -> None:
    await pool.executemany("INSERT INTO ts_kv (device_id, key, ts, long_v) VALUES ($1, 1, $2, 1)",
                           [(device_id, ts) for ts in timestamps])


async def partitions(pool) -> set[str]:
    return {r["relname"] for r in await pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'ts_kv'::regclass")}


async def rows_of(pool, device_id: str) -> list[int]:
    return [r["ts"] for r in await pool.fetch("SELECT ts FROM ts_kv WHERE device_id = $1 ORDER BY ts", device_id)]


async def test_a_partition_goes_when_every_project_is_done_with_it(isolated) -> None:
    pool = isolated
    _, short = await project_with_device(pool, 30)
    _, long = await project_with_device(pool, 400)
    old = await month_partition(pool, 2099, 6)        # older than both TTLs: dropped
    middle = await month_partition(pool, 2100, 6)     # past 30 days, within 400: stays
    recent = await month_partition(pool, 2100, 12)    # within both: untouched
    june_2099, june_2100, dec_2100 = (month_bounds(2099, 6)[0], month_bounds(2100, 6)[0], NOW - 5 * DAY)
    await put(pool, short, june_2099, june_2100, dec_2100)
    await put(pool, long, june_2099, june_2100, dec_2100)

    outcome = await RetentionStore(pool, 0, 0).enforce(NOW)

    assert outcome.partitions_dropped == (old,)
    assert old not in await partitions(pool) and {middle, recent} <= await partitions(pool)
    # The short-lived project's rows in the partition that stays are deleted; the other's kept.
    assert await rows_of(pool, short) == [dec_2100]
    assert await rows_of(pool, long) == [june_2100, dec_2100]
    assert outcome.telemetry_rows_deleted == 1


async def test_a_project_keeping_telemetry_forever_keeps_every_partition(isolated) -> None:
    pool = isolated
    _, short = await project_with_device(pool, 30)
    _, forever = await project_with_device(pool, None)  # the default setting below: 0, forever
    old = await month_partition(pool, 2099, 3)
    ts = month_bounds(2099, 3)[0]
    await put(pool, short, ts)
    await put(pool, forever, ts)

    outcome = await RetentionStore(pool, 0, 0).enforce(NOW)

    assert outcome.partitions_dropped == ()
    assert old in await partitions(pool)
    assert await rows_of(pool, short) == [] and await rows_of(pool, forever) == [ts]


async def test_audit_records_older_than_their_retention_go(isolated) -> None:
    pool = isolated
    marker = "retention-" + secrets.token_hex(4)
    await pool.executemany("INSERT INTO audit_log (ts, action, outcome, source) VALUES ($1, 'TEST', 'X', $2)",
                           [(NOW - 40 * DAY, marker), (NOW - 10 * DAY, marker)])
    retention = Retention(RetentionStore(pool, 0, audit_retention_days=30), interval=3600)
    outcome = await retention.run_once(NOW)
    assert outcome.audit_rows_deleted == 1
    left = await pool.fetch("SELECT ts FROM audit_log WHERE source = $1", marker)
    assert [r["ts"] for r in left] == [NOW - 10 * DAY]


async def test_set_telemetry_ttl(isolated) -> None:
    project_id, _ = await project_with_device(isolated, None)
    assert await set_telemetry_ttl(isolated, project_id, 7)
    assert await isolated.fetchval("SELECT telemetry_ttl_days FROM projects WHERE id = $1", project_id) == 7
    assert not await set_telemetry_ttl(isolated, "no-such-project", 7)


async def test_the_writer_recreates_a_partition_retention_dropped(gateway, tenant, http) -> None:
    """A process that knew a partition writes into it again after retention dropped it."""
    import orjson
    body = {"deviceName": "ret-w", "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}
    async with http.post("/api/v1/provision", json=body) as resp:
        token = orjson.loads(await resp.read())["credentialsValue"]
    ts = month_bounds(2099, 1)[0] + 1
    async with http.post(f"/api/v1/{token}/telemetry", json={"ts": ts, "values": {"a": 1}}) as resp:
        assert resp.status == 200
    await gateway.services.pool.execute("DROP TABLE ts_kv_2099_01")
    async with http.post(f"/api/v1/{token}/telemetry", json={"ts": ts + 1, "values": {"a": 2}}) as resp:
        assert resp.status == 200
    assert await gateway.services.pool.fetchval("SELECT count(*) FROM ts_kv_2099_01") == 1
    await gateway.services.pool.execute("DROP TABLE ts_kv_2099_01")
