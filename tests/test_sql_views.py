"""The public SQL interface (schema iot, migration 0013; docs/sql.md): its columns, its values,
and the read-only role `iot-gateway admin create-reader-role` makes."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from tests.management_client import Management

T0 = 1_700_000_000_000


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()

# The interface: these columns, in this order. Columns may only be added at the end.
COLUMNS = {
    "devices": ["device_id", "device_name", "label", "project_id", "product_id", "product_name", "gateway",
                "gateway_id", "status", "last_online_ms", "last_online", "last_activity_ms", "last_activity",
                "created_ms", "created"],
    "telemetry": ["device_id", "device_name", "project_id", "product_id", "key", "ts_ms", "ts", "value_type",
                  "value_number", "value_boolean", "value_long", "value_double", "value_string", "value_json",
                  "value_text"],
    "latest": ["device_id", "device_name", "project_id", "product_id", "key", "ts_ms", "ts", "value_type",
               "value_number", "value_boolean", "value_long", "value_double", "value_string", "value_json",
               "value_text"],
}


@pytest.fixture
async def device(api: Management, http) -> dict:
    device = await api.create_device("sql-" + secrets.token_hex(3))
    readings = [{"ts": T0 + n * 1000, "values": {"t": 20 + n, "h": 0.5 + n, "on": n % 2 == 0, "s": f"x{n}",
                                                "j": {"n": n}}} for n in range(3)]
    async with http.post(f"/api/v1/{device['auth_info']['access_token']}/telemetry",
                         data=orjson.dumps(readings)) as resp:
        assert resp.status == 200
    return device


async def test_columns_are_the_documented_ones(gateway) -> None:
    for view, columns in COLUMNS.items():
        found = await gateway.services.pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'iot' AND table_name = $1 "
            "ORDER BY ordinal_position", view)
        assert [r["column_name"] for r in found] == columns


async def test_telemetry_typed_and_as_numbers(gateway, device: dict, api: Management) -> None:
    rows = await gateway.services.pool.fetch(
        "SELECT * FROM iot.telemetry WHERE device_id = $1 AND ts_ms >= $2 ORDER BY key, ts_ms",
        device["device_id"], T0 + 1000)
    assert [(r["key"], r["ts_ms"], r["value_type"], r["value_number"], r["value_text"]) for r in rows] == [
        ("h", T0 + 1000, "DOUBLE", 1.5, "1.5"), ("h", T0 + 2000, "DOUBLE", 2.5, "2.5"),
        ("j", T0 + 1000, "JSON", None, '{"n": 1}'), ("j", T0 + 2000, "JSON", None, '{"n": 2}'),
        ("on", T0 + 1000, "BOOLEAN", 0.0, "false"), ("on", T0 + 2000, "BOOLEAN", 1.0, "true"),
        ("s", T0 + 1000, "STRING", None, "x1"), ("s", T0 + 2000, "STRING", None, "x2"),
        ("t", T0 + 1000, "LONG", 21.0, "21"), ("t", T0 + 2000, "LONG", 22.0, "22"),
    ]
    first = rows[0]
    assert first["ts"] == datetime.fromtimestamp((T0 + 1000) / 1000, UTC)
    assert (first["device_name"], first["project_id"], first["product_id"]) == (
        device["device_name"], api.tenant.project_id, api.tenant.product_id)
    assert first["value_double"] == 1.5 and first["value_long"] is None and first["value_json"] is None


async def test_latest_and_devices(gateway, device: dict, api: Management) -> None:
    pool = gateway.services.pool
    latest = await pool.fetch("SELECT key, ts_ms, value_text FROM iot.latest WHERE device_id = $1 ORDER BY key",
                              device["device_id"])
    assert [tuple(r) for r in latest] == [("h", T0 + 2000, "2.5"), ("j", T0 + 2000, '{"n": 2}'),
                                          ("on", T0 + 2000, "true"), ("s", T0 + 2000, "x2"), ("t", T0 + 2000, "22")]
    row = await pool.fetchrow("SELECT * FROM iot.devices WHERE device_id = $1", device["device_id"])
    product = await api.call("GET", f"/products/{api.tenant.product_id}")
    assert (row["device_name"], row["product_name"], row["gateway"]) == (
        device["device_name"], product.body["name"], False)
    # The HTTP request above was the device's activity: ONLINE until its lease runs out.
    shown = await api.call("GET", f"/devices/{device['device_id']}")
    assert row["status"] == shown.body["status"]
    await pool.execute("UPDATE devices SET online_until = $2 WHERE id = $1", device["device_id"],
                       int(time.time() * 1000) - 1)
    assert await pool.fetchval("SELECT status FROM iot.devices WHERE device_id = $1", device["device_id"]) == "OFFLINE"


async def test_reader_role_reads_the_views_only(database_url: str, device: dict, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_DATA_DIR=str(tmp_path), GATEWAY_DATABASE_URL=database_url)
    role = "reader_" + secrets.token_hex(3)
    code, out, err = await run_cli("admin", "create-reader-role", role, env=env)
    assert code == 0, err
    name, password = out.split()
    assert name == role and password.isalnum() and len(password) == 24
    # Again: the password changes, the grants stay.
    code, out, err = await run_cli("admin", "create-reader-role", role, "--password", "second", env=env)
    assert code == 0 and out == f"{role} second\n", err
    code, _, err = await run_cli("admin", "create-reader-role", "Robert'); DROP", env=env)
    assert code != 0 and "role name" in err

    conn = await asyncpg.connect(database_url, user=role, password="second")
    try:
        # The views' schema is on the role's search path: psql and Grafana name views plainly.
        assert await conn.fetchval("SELECT count(*) FROM telemetry WHERE device_id = $1", device["device_id"]) == 15
        assert await conn.fetchval("SELECT count(*) FROM latest WHERE device_id = $1", device["device_id"]) == 5
        assert await conn.fetchval("SELECT count(*) FROM devices WHERE device_id = $1", device["device_id"]) == 1
        for statement in ("SELECT * FROM public.ts_kv LIMIT 1", "SELECT * FROM public.management_tokens LIMIT 1",
                          "SELECT * FROM public.device_credentials LIMIT 1"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(statement)
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        with pytest.raises((asyncpg.ReadOnlySQLTransactionError, asyncpg.InsufficientPrivilegeError)):
            await conn.execute("DELETE FROM public.projects")
        with pytest.raises((asyncpg.ReadOnlySQLTransactionError, asyncpg.InsufficientPrivilegeError)):
            await conn.execute("CREATE TABLE iot.mine (x int)")
    finally:
        await conn.close()
