"""Retention: each project's expired month partitions dropped whole, whatever other projects
keep of the same months; old audit records deleted."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from fleetgate.core import metrics
from fleetgate.core.retention import Retention
from fleetgate.storage.partitions import Partitions, month_bounds, month_table, project_table
from fleetgate.storage.retention import RetentionStore, set_telemetry_ttl
from tests.retention_support import DAY, NOW, FixedClock, isolated, project_with_device  # noqa: F401 (a fixture)

# The months around the fixed "now" made by the tests.
JUNE_2099, JUNE_2100, NOVEMBER_2100 = month_bounds(2099, 6)[0], month_bounds(2100, 6)[0], month_bounds(2100, 11)[0]
DECEMBER_2100 = NOW - 5 * DAY


async def put(pool, project_no: int, device_id: str, *timestamps: int) -> None:
    """Rows as the writer stores them, their partitions made as the writer makes them."""
    await Partitions().ensure(pool, {(project_no, ts) for ts in timestamps})
    await pool.executemany("INSERT INTO ts_kv (device_id, key, ts, project_no, long_v) VALUES ($1, 1, $2, $3, 1)",
                           [(device_id, ts, project_no) for ts in timestamps])


def month(project_no: int, ts: int) -> str:
    moment = datetime.fromtimestamp(ts / 1000, UTC)
    return month_table(project_no, moment.year, moment.month)


async def partitions(pool) -> set[str]:
    """ts_kv's partitions at both levels."""
    return {r["name"] for r in await pool.fetch(
        "SELECT relid::regclass::text AS name FROM pg_partition_tree('ts_kv') WHERE level > 0")}


async def rows_of(pool, device_id: str) -> list[int]:
    return [r["ts"] for r in await pool.fetch("SELECT ts FROM ts_kv WHERE device_id = $1 ORDER BY ts", device_id)]


async def test_a_short_time_to_live_drops_the_projects_months_while_another_project_keeps_the_same_months(
        isolated) -> None:
    pool = isolated
    short_no, short = await project_with_device(pool, 30)
    long_no, long = await project_with_device(pool, 400)
    await put(pool, short_no, short, JUNE_2099, JUNE_2100, DECEMBER_2100)
    await put(pool, long_no, long, JUNE_2099, JUNE_2100, DECEMBER_2100)

    outcome = await RetentionStore(pool, 0, 0).enforce(NOW)

    # Past 30 days: both of the short-lived project's Junes; past 400 days: the other's June 2099 only.
    assert short_no < long_no  # in the order they were made: the outcome lists by project, then month
    assert outcome.partitions_dropped == (
        month(short_no, JUNE_2099), month(short_no, JUNE_2100), month(long_no, JUNE_2099))
    left = await partitions(pool)
    assert {month(short_no, DECEMBER_2100), month(long_no, JUNE_2100), month(long_no, DECEMBER_2100)} <= left
    assert not {month(short_no, JUNE_2099), month(short_no, JUNE_2100), month(long_no, JUNE_2099)} & left
    assert await rows_of(pool, short) == [DECEMBER_2100]
    assert await rows_of(pool, long) == [JUNE_2100, DECEMBER_2100]
    # Nothing left to do: a second run drops nothing.
    assert (await RetentionStore(pool, 0, 0).enforce(NOW)).partitions_dropped == ()


async def test_a_time_to_live_of_0_keeps_everything_of_that_project_only(isolated) -> None:
    pool = isolated
    short_no, short = await project_with_device(pool, 30)
    forever_no, forever = await project_with_device(pool, None)  # the default setting below: 0, forever
    explicit_no, explicit = await project_with_device(pool, 0)   # 0 of its own, whatever the default
    for no, device in ((short_no, short), (forever_no, forever), (explicit_no, explicit)):
        await put(pool, no, device, JUNE_2099, DECEMBER_2100)

    outcome = await RetentionStore(pool, 0, 0).enforce(NOW)
    assert outcome.partitions_dropped == (month(short_no, JUNE_2099),)
    assert await rows_of(pool, short) == [DECEMBER_2100]
    assert await rows_of(pool, forever) == [JUNE_2099, DECEMBER_2100]

    # A default time-to-live applies to the project that has none of its own, not to 0.
    outcome = await RetentionStore(pool, 30, 0).enforce(NOW)
    assert outcome.partitions_dropped == (month(forever_no, JUNE_2099),)
    assert await rows_of(pool, explicit) == [JUNE_2099, DECEMBER_2100]


async def test_a_month_goes_whole_once_its_end_is_past_the_time_to_live(isolated) -> None:
    """Rows are never deleted one by one: a month whose end is within the time-to-live stays
    whole, rows older than the time-to-live included; it goes at the run after its end expires."""
    pool = isolated
    no, device = await project_with_device(pool, 30)
    first_of_november, last_of_november = NOVEMBER_2100, NOW - 31 * DAY - 1
    first_of_december = month_bounds(2100, 12)[0]
    await put(pool, no, device, first_of_november, last_of_november, first_of_december, DECEMBER_2100)

    # 29 days into December: November ended 29 days ago, within the 30 days.
    assert (await RetentionStore(pool, 0, 0).enforce(first_of_december + 29 * DAY)).partitions_dropped == ()
    assert await rows_of(pool, device) == [first_of_november, last_of_november, first_of_december, DECEMBER_2100]

    # A day later November's end is 30 days old: the month goes, its first row 60 days old.
    outcome = await RetentionStore(pool, 0, 0).enforce(first_of_december + 30 * DAY)
    assert outcome.partitions_dropped == (month(no, NOVEMBER_2100),)
    assert await rows_of(pool, device) == [first_of_december, DECEMBER_2100]


async def test_the_partitions_of_a_project_that_no_longer_exists_are_dropped(isolated) -> None:
    pool = isolated
    gone_no, gone = await project_with_device(pool, 0)
    kept_no, kept = await project_with_device(pool, 0)
    await put(pool, gone_no, gone, DECEMBER_2100)
    await put(pool, kept_no, kept, DECEMBER_2100)
    await pool.execute("DELETE FROM projects WHERE no = $1", gone_no)

    outcome = await RetentionStore(pool, 0, 0).enforce(NOW)

    assert outcome.partitions_dropped == (project_table(gone_no),)
    assert await rows_of(pool, gone) == [] and await rows_of(pool, kept) == [DECEMBER_2100]
    assert project_table(kept_no) in await partitions(pool)


async def test_dropped_partitions_are_counted(isolated) -> None:
    pool = isolated
    no, device = await project_with_device(pool, 30)
    await put(pool, no, device, JUNE_2099, JUNE_2100)
    before = metrics.RETENTION_DROPPED._value.get()
    outcome = await Retention(RetentionStore(pool, 0, 0), interval=3600, clock=FixedClock(NOW)).run_once()
    assert len(outcome.partitions_dropped) == 2
    assert metrics.RETENTION_DROPPED._value.get() == before + 2


async def test_one_process_enforces_at_a_time(isolated) -> None:
    async with isolated.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x7A_B1_E6)
        assert (await RetentionStore(isolated, 0, 0).enforce(NOW)).skipped


async def test_audit_records_older_than_their_retention_go(isolated) -> None:
    pool = isolated
    marker = "retention-" + secrets.token_hex(4)
    await pool.executemany("INSERT INTO audit_log (ts, action, outcome, source) VALUES ($1, 'TEST', 'X', $2)",
                           [(NOW - 40 * DAY, marker), (NOW - 10 * DAY, marker)])
    retention = Retention(RetentionStore(pool, 0, audit_retention_days=30), interval=3600, clock=FixedClock(NOW))
    outcome = await retention.run_once()
    assert outcome.audit_rows_deleted == 1
    left = await pool.fetch("SELECT ts FROM audit_log WHERE source = $1", marker)
    assert [r["ts"] for r in left] == [NOW - 10 * DAY]


async def test_set_telemetry_ttl(isolated) -> None:
    no, _ = await project_with_device(isolated, None)
    project_id = await isolated.fetchval("SELECT id FROM projects WHERE no = $1", no)
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
    no = await gateway.services.pool.fetchval("SELECT no FROM projects WHERE id = $1", tenant.project_id)
    partition = month_table(no, 2099, 1)
    ts = month_bounds(2099, 1)[0] + 1
    async with http.post(f"/api/v1/{token}/telemetry", json={"ts": ts, "values": {"a": 1}}) as resp:
        assert resp.status == 200
    await gateway.services.pool.execute(f"DROP TABLE {partition}")
    async with http.post(f"/api/v1/{token}/telemetry", json={"ts": ts + 1, "values": {"a": 2}}) as resp:
        assert resp.status == 200
    assert await gateway.services.pool.fetchval(f"SELECT count(*) FROM {partition}") == 1
    # And after its project's partition went too.
    await gateway.services.pool.execute(f"DROP TABLE {project_table(no)}")
    async with http.post(f"/api/v1/{token}/telemetry", json={"ts": ts + 2, "values": {"a": 3}}) as resp:
        assert resp.status == 200
    assert await gateway.services.pool.fetchval(f"SELECT count(*) FROM {partition}") == 1
    await gateway.services.pool.execute(f"DROP TABLE {project_table(no)}")
