"""Retention in the month layout (storage/retention_month.py): months dropped past the longest
time-to-live of all projects, the rows of projects with a shorter one deleted in batches."""

from __future__ import annotations

from fleetgate.core import metrics
from fleetgate.core.retention import Retention
from fleetgate.storage.layout_conversion import convert
from fleetgate.storage.month_partitions import MonthPartitions
from fleetgate.storage.retention import RetentionStore
from fleetgate.storage.retention_month import delete_expired_rows
from fleetgate.storage.telemetry_layout import Layout
from tests.layout_support import MONTHS, fresh, partition_tree, put_rows  # noqa: F401 (a fixture)
from tests.retention_support import DAY, NOW, FixedClock, project_with_device

JUNE_2099, JUNE_2100, DECEMBER_2100 = MONTHS
RECENT = NOW - 5 * DAY


async def month_database(fresh):
    assert await convert(fresh.pool, Layout.MONTH)
    return fresh.pool


async def put(pool, project_no: int, device_id: str, *timestamps: int) -> None:
    await put_rows(pool, MonthPartitions(), project_no, device_id, 1, *timestamps)


async def rows_of(pool, device_id: str) -> list[int]:
    return [r["ts"] for r in await pool.fetch("SELECT ts FROM ts_kv WHERE device_id = $1 ORDER BY ts", device_id)]


async def test_a_short_time_to_live_deletes_that_projects_old_rows_and_months_go_past_the_longest(fresh) -> None:
    pool = await month_database(fresh)
    short_no, short = await project_with_device(pool, 30)
    long_no, long = await project_with_device(pool, 400)
    await put(pool, short_no, short, JUNE_2099, JUNE_2100, NOW - 31 * DAY, NOW - 29 * DAY, RECENT)
    await put(pool, long_no, long, JUNE_2099, JUNE_2100, NOW - 31 * DAY, RECENT)
    deleted = metrics.RETENTION_DELETED.labels("ts_kv")._value.get()

    outcome = await Retention(RetentionStore(pool, 0, 0), 3600, clock=FixedClock(NOW)).run_once()

    # Past 400 days, the longest: June 2099, both projects' rows of it. Past 30: the short one's rows.
    assert outcome.partitions_dropped == ("ts_kv_2099_06",)
    assert outcome.telemetry_rows_deleted == 2
    assert metrics.RETENTION_DELETED.labels("ts_kv")._value.get() == deleted + 2
    assert set(await partition_tree(pool)) == {"ts_kv_2100_06", "ts_kv_2100_12"}
    assert await rows_of(pool, short) == [NOW - 29 * DAY, RECENT]
    assert await rows_of(pool, long) == [JUNE_2100, NOW - 31 * DAY, RECENT]
    # Nothing left to do.
    again = await RetentionStore(pool, 0, 0).enforce(NOW)
    assert (again.partitions_dropped, again.telemetry_rows_deleted) == ((), 0)


async def test_a_project_keeping_telemetry_forever_keeps_every_month(fresh) -> None:
    pool = await month_database(fresh)
    short_no, short = await project_with_device(pool, 30)
    forever_no, forever = await project_with_device(pool, None)  # the default below: 0, forever
    await put(pool, short_no, short, JUNE_2099, JUNE_2100, RECENT)
    await put(pool, forever_no, forever, JUNE_2099, JUNE_2100, RECENT)

    outcome = await RetentionStore(pool, 0, 0).enforce(NOW)

    assert outcome.partitions_dropped == ()
    assert outcome.telemetry_rows_deleted == 2
    assert await rows_of(pool, short) == [RECENT]
    assert await rows_of(pool, forever) == [JUNE_2099, JUNE_2100, RECENT]
    assert set(await partition_tree(pool)) == {"ts_kv_2099_06", "ts_kv_2100_06", "ts_kv_2100_12"}

    # A default time-to-live applies to the project without one of its own: now the longest is 30.
    outcome = await RetentionStore(pool, 30, 0).enforce(NOW)
    assert outcome.partitions_dropped == ("ts_kv_2099_06", "ts_kv_2100_06")
    assert await rows_of(pool, forever) == [RECENT]


async def test_rows_are_deleted_in_batches_across_devices_keys_and_months(fresh) -> None:
    pool = await month_database(fresh)
    short_no, short = await project_with_device(pool, 30)
    other_no, other = await project_with_device(pool, 30)
    kept_no, kept = await project_with_device(pool, 0)
    old = [JUNE_2100 + n * 1000 for n in range(7)] + [NOW - 40 * DAY + n for n in range(4)]
    for key in (1, 2):
        await put_rows(pool, MonthPartitions(), short_no, short, key, *old, RECENT)
        await put_rows(pool, MonthPartitions(), other_no, other, key, *old, RECENT)
        await put_rows(pool, MonthPartitions(), kept_no, kept, key, *old, RECENT)

    deleted = await delete_expired_rows(pool, NOW, {short_no: 30, other_no: 30, kept_no: 0}, 0, batch_rows=3)

    assert deleted == 2 * 2 * len(old)
    for device in (short, other):
        assert await rows_of(pool, device) == [RECENT, RECENT]
    assert len(await rows_of(pool, kept)) == 2 * (len(old) + 1)


async def test_the_measurement_in_docs_scaling_runs(fresh) -> None:
    from fleetgate.retention_measure import measure

    result = await measure(fresh.url, 2_000)
    assert result["rows"] == 2_000
    # 2,000 row deletes write more WAL than one DROP TABLE.
    assert result["batched delete, WAL bytes"] > result["drop, WAL bytes"] > 0
