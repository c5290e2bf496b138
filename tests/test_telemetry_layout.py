"""The two telemetry layouts (storage/telemetry_layout.py): converting a database both ways
(storage/layout_conversion.py), choosing the layout at a fresh installation's first start, and
the admin command."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys

import asyncpg
import pytest

from fleetgate.core.errors import Conflict
from fleetgate.core.telemetry_model import SortOrder, TimeseriesQuery
from fleetgate.storage.layout_conversion import convert, settle
from fleetgate.storage.month_partitions import MonthPartitions
from fleetgate.storage.partitions import Partitions
from fleetgate.storage.reader_role import create_reader_role
from fleetgate.storage.telemetry_layout import Layout, current_layout
from fleetgate.storage.telemetry_queries import TelemetryQueryStore
from tests.layout_support import MONTHS, fresh, key_id, partition_tree, put_rows  # noqa: F401 (a fixture)
from tests.retention_support import project_with_device

ROWS = "SELECT * FROM ts_kv ORDER BY device_id, key, ts"
TELEMETRY = "SELECT * FROM iot.telemetry WHERE device_id = ANY($1::text[]) ORDER BY device_id, key, ts_ms"
LATEST = "SELECT * FROM iot.latest WHERE device_id = ANY($1::text[]) ORDER BY device_id, key"


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def cli_env(url: str, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_DATA_DIR=str(tmp_path), GATEWAY_DATABASE_URL=url)
    return env


async def snapshot(pool, *devices: str) -> tuple[list, list, list]:
    """ts_kv's rows, and what the views of migration 0013 show of the devices."""
    return await pool.fetch(ROWS), await pool.fetch(TELEMETRY, list(devices)), await pool.fetch(LATEST, list(devices))


async def test_a_database_converts_to_the_month_layout_and_back_with_its_rows_views_and_grants(fresh) -> None:
    pool = fresh.pool
    a_no, a = await project_with_device(pool, 30)
    b_no, b = await project_with_device(pool, None)
    temperature, humidity = await key_id(pool, "temperature"), await key_id(pool, "humidity")
    for no, device in ((a_no, a), (b_no, b)):
        for key in (temperature, humidity):
            await put_rows(pool, Partitions(), no, device, key, *(ts + n * 1000 for ts in MONTHS for n in range(4)))
    rows, telemetry, latest = await snapshot(pool, a, b)
    assert len(rows) == 2 * 2 * 3 * 4 and len(telemetry) == len(rows) and len(latest) == 4
    role, password = "layout_" + secrets.token_hex(3), secrets.token_hex(8)
    await create_reader_role(pool, role, password)
    queries = TelemetryQueryStore(pool)
    history = TimeseriesQuery("temperature", MONTHS[0], MONTHS[-1] + 10_000, 100, SortOrder.ASC)
    before = (await queries.latest(a, None), await queries.history(b, history))

    assert await convert(pool, Layout.MONTH)

    assert await current_layout(pool) is Layout.MONTH
    assert await partition_tree(pool) == {"ts_kv_2099_06": 1, "ts_kv_2100_06": 1, "ts_kv_2100_12": 1}
    assert await pool.fetch(ROWS) == rows
    assert await pool.fetch(TELEMETRY, [a, b]) == telemetry
    assert await pool.fetch(LATEST, [a, b]) == latest
    assert (await queries.latest(a, None), await queries.history(b, history)) == before
    reader = await asyncpg.connect(fresh.url, user=role, password=password)
    try:
        assert await reader.fetchval("SELECT count(*) FROM telemetry WHERE device_id = $1", a) == len(rows) // 2
        assert await reader.fetchval("SELECT count(*) FROM latest WHERE device_id = $1", b) == 2
    finally:
        await reader.close()
    # Idempotent: the database is in that layout already.
    assert not await convert(pool, Layout.MONTH)
    # The month layout's writer makes its partitions as rows arrive.
    await put_rows(pool, MonthPartitions(), a_no, a, temperature, MONTHS[-1] + 40 * 86_400_000)
    assert (await partition_tree(pool))["ts_kv_2101_01"] == 1
    rows, telemetry, latest = await snapshot(pool, a, b)
    before = (await queries.latest(a, None), await queries.history(b, history))

    assert await convert(pool, Layout.PROJECT_MONTH)

    assert await current_layout(pool) is Layout.PROJECT_MONTH
    months = {f"ts_kv_p{no}_{m}": 2 for no in (a_no, b_no) for m in ("2099_06", "2100_06", "2100_12")}
    assert await partition_tree(pool) == {f"ts_kv_p{a_no}": 1, f"ts_kv_p{b_no}": 1, f"ts_kv_p{a_no}_2101_01": 2,
                                          **months}
    assert await pool.fetch(ROWS) == rows
    assert await pool.fetch(TELEMETRY, [a, b]) == telemetry
    assert await pool.fetch(LATEST, [a, b]) == latest
    assert (await queries.latest(a, None), await queries.history(b, history)) == before
    reader = await asyncpg.connect(fresh.url, user=role, password=password)
    try:
        assert await reader.fetchval("SELECT count(*) FROM telemetry WHERE device_id = ANY($1::text[])", [a, b]) \
            == len(rows)
    finally:
        await reader.close()
    assert await pool.fetchval(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'ts_kv'::regclass AND contype = 'p'") == "ts_kv_pkey"
    assert not await convert(pool, Layout.PROJECT_MONTH)


async def test_the_conversion_refuses_while_a_gateway_runs(fresh) -> None:
    pool = fresh.pool
    await pool.execute("INSERT INTO gateway_processes (id, lease_until) VALUES ('other', $1)", 2**62)
    with pytest.raises(Conflict, match="stop every gateway"):
        await convert(pool, Layout.MONTH)
    assert await current_layout(pool) is Layout.PROJECT_MONTH
    # Nor does the setting convert it at start, even empty: the other gateway writes in its layout.
    assert await settle(pool, Layout.MONTH) is Layout.PROJECT_MONTH
    await pool.execute("DELETE FROM gateway_processes")
    assert await convert(pool, Layout.MONTH)


async def test_the_setting_chooses_the_layout_of_a_fresh_database(fresh) -> None:
    assert await settle(fresh.pool, Layout.PROJECT_MONTH) is Layout.PROJECT_MONTH
    assert await settle(fresh.pool, Layout.MONTH) is Layout.MONTH
    assert await fresh.pool.fetchval("SELECT pg_get_partkeydef('ts_kv'::regclass)") == "RANGE (ts)"


async def test_a_setting_that_disagrees_with_a_database_holding_telemetry_is_warned_of_once(
        fresh, caplog: pytest.LogCaptureFixture) -> None:
    pool = fresh.pool
    no, device = await project_with_device(pool, None)
    await put_rows(pool, Partitions(), no, device, await key_id(pool, "t"), MONTHS[0])
    with caplog.at_level(logging.WARNING, logger="fleetgate.storage.layout_conversion"):
        assert await settle(pool, Layout.MONTH) is Layout.PROJECT_MONTH
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "`iot-gateway admin telemetry-layout month`" in warnings[0], warnings
    assert await current_layout(pool) is Layout.PROJECT_MONTH


async def test_the_admin_command_converts_and_explains_itself(fresh, tmp_path) -> None:
    env = cli_env(fresh.url, tmp_path)
    code, out, err = await run_cli("admin", "telemetry-layout", "--help", env=env)
    assert code == 0, err
    assert "{month,project-month}" in out and "Stop every gateway first" in out and "a month at a time" in out
    code, out, err = await run_cli("admin", "telemetry-layout", "month", env=env)
    assert (code, out) == (0, "month\n"), err
    assert await current_layout(fresh.pool) is Layout.MONTH
    code, out, err = await run_cli("admin", "telemetry-layout", "month", env=env)
    assert (code, out) == (0, "month\n"), err
    code, out, err = await run_cli("admin", "telemetry-layout", "by-day", env=env)
    assert code == 2 and "invalid choice" in err
