"""The COPY writer against a real PostgreSQL: idempotent, last write wins, latest values,
partitions by project and month."""

from __future__ import annotations

import secrets

import pytest
from asyncpg import InternalClientError

from fleetgate.core.errors import Unavailable
from fleetgate.core.telemetry_model import (
    AttributeMessage,
    AttributeScope,
    KeyValue,
    Reading,
    TelemetryMessage,
    ValueType,
)
from fleetgate.storage.errors import translated
from fleetgate.storage.telemetry import DeviceProjects, KeyDictionary, TelemetryWriter
from tests.support import new_tenant

JAN, FEB = 1_767_225_600_000, 1_769_904_000_000  # 2026-01-01, 2026-02-01 (UTC)


async def register(pool, tenant) -> str:
    """A device of the tenant's project: the writer stores the rows of registered devices only."""
    device_id = "dev-" + secrets.token_hex(8)
    await pool.execute("INSERT INTO devices (id, project_id, product_id, name, created_at) VALUES ($1, $2, $3, $1, 0)",
                       device_id, tenant.project_id, tenant.product_id)
    return device_id


async def project_no(pool, tenant) -> int:
    return await pool.fetchval("SELECT no FROM projects WHERE id = $1", tenant.project_id)


@pytest.fixture
async def device(gateway, tenant) -> str:
    return await register(gateway.services.pool, tenant)


@pytest.fixture
def writer(gateway) -> TelemetryWriter:
    return TelemetryWriter(gateway.services.pool, KeyDictionary())


def reading(ts: int, **values: object) -> Reading:
    kinds = {bool: ValueType.BOOLEAN, int: ValueType.LONG, float: ValueType.DOUBLE, str: ValueType.STRING}
    return Reading(ts, tuple(KeyValue(k, kinds[type(v)], v) for k, v in values.items()))


async def rows(pool, device: str) -> list[tuple]:
    records = await pool.fetch(
        "SELECT k.key, t.ts, t.bool_v, t.long_v, t.dbl_v, t.str_v FROM ts_kv t "
        "JOIN key_dictionary k ON k.key_id = t.key WHERE t.device_id = $1 ORDER BY k.key, t.ts", device)
    return [tuple(r) for r in records]


async def latest(gateway, device: str) -> list[tuple]:
    return [(v.key, v.ts, v.value) for v in await gateway.services.telemetry_queries.latest(device, None)]


async def test_writing_the_same_batch_twice_leaves_the_same_rows(gateway, writer, device) -> None:
    batch = [TelemetryMessage(device, (reading(JAN, t=1, s="a"), reading(JAN + 1, t=2)))]
    await writer.write(batch, [])
    first = await rows(gateway.services.pool, device)
    await writer.write(batch, [])
    assert await rows(gateway.services.pool, device) == first
    assert first == [("s", JAN, None, None, None, "a"), ("t", JAN, None, 1, None, None), ("t", JAN + 1, None, 2, None, None)]


async def test_last_write_wins_within_and_across_batches(gateway, writer, device) -> None:
    await writer.write([TelemetryMessage(device, (reading(JAN, t=1),)),
                        TelemetryMessage(device, (reading(JAN, t=2.5),))], [])
    assert await rows(gateway.services.pool, device) == [("t", JAN, None, None, 2.5, None)]
    await writer.write([TelemetryMessage(device, (reading(JAN, t=True),))], [])
    assert await rows(gateway.services.pool, device) == [("t", JAN, True, None, None, None)]


async def test_latest_values_keep_the_newest_timestamp(gateway, writer, device) -> None:
    await writer.write([TelemetryMessage(device, (reading(FEB, t=2), reading(JAN, t=1)))], [])
    assert await latest(gateway, device) == [("t", FEB, 2)]
    # An older reading arriving later does not replace the latest value.
    await writer.write([TelemetryMessage(device, (reading(JAN + 5, t=9),))], [])
    assert await latest(gateway, device) == [("t", FEB, 2)]


async def partitions_of(pool, device: str) -> list[str]:
    return [r["part"] for r in await pool.fetch(
        "SELECT tableoid::regclass::text AS part FROM ts_kv WHERE device_id = $1 ORDER BY ts", device)]


async def test_rows_land_in_their_projects_monthly_partitions(gateway, writer, tenant, device) -> None:
    pool = gateway.services.pool
    other = await new_tenant(gateway.services)
    neighbour = await register(pool, other)
    no, other_no = await project_no(pool, tenant), await project_no(pool, other)
    await writer.write([TelemetryMessage(device, (reading(JAN, t=1), reading(FEB, t=2))),
                        TelemetryMessage(neighbour, (reading(JAN, t=3),))], [])
    assert await partitions_of(pool, device) == [f"ts_kv_p{no}_2026_01", f"ts_kv_p{no}_2026_02"]
    assert await partitions_of(pool, neighbour) == [f"ts_kv_p{other_no}_2026_01"]
    parents = {r["relid"]: r["parentrelid"] for r in await pool.fetch(
        "SELECT relid::text, parentrelid::text FROM pg_partition_tree('ts_kv')")}
    assert parents[f"ts_kv_p{no}_2026_01"] == f"ts_kv_p{no}" and parents[f"ts_kv_p{no}"] == "ts_kv"


async def test_the_rows_of_a_device_not_registered_are_left_out(gateway, writer, device) -> None:
    """Deleting a device deletes its telemetry; what was queued for it is not stored after."""
    gone = "dev-" + secrets.token_hex(8)
    await writer.write([TelemetryMessage(gone, (reading(JAN, t=1),)), TelemetryMessage(device, (reading(JAN, t=2),))], [])
    assert await rows(gateway.services.pool, gone) == []
    assert await rows(gateway.services.pool, device) == [("t", JAN, None, 2, None, None)]


async def test_a_device_whose_project_is_looked_up_again_is_written_the_same(gateway, tenant, device) -> None:
    # Trusted for no time at all: every batch looks the project up again.
    writer = TelemetryWriter(gateway.services.pool, KeyDictionary(), DeviceProjects(max_age=0))
    await writer.write([TelemetryMessage(device, (reading(JAN, t=1),))], [])
    await writer.write([TelemetryMessage(device, (reading(JAN + 1, t=2),))], [])
    assert await rows(gateway.services.pool, device) == [("t", JAN, None, 1, None, None), ("t", JAN + 1, None, 2, None, None)]


async def test_client_attributes_are_upserted_in_the_same_write(gateway, writer, device) -> None:
    scope = AttributeScope.CLIENT
    await writer.write([], [AttributeMessage(device, scope, JAN, (KeyValue("fw", ValueType.STRING, "1.0"),)),
                            AttributeMessage(device, scope, JAN + 1, (KeyValue("fw", ValueType.STRING, "1.1"),))])
    values = await gateway.services.attributes.read_attributes(device, scope, None)
    assert [(v.key, v.value, v.last_update_ts) for v in values] == [("fw", "1.1", JAN + 1)]


async def test_json_values_round_trip(gateway, writer, device) -> None:
    message = TelemetryMessage(device, (Reading(JAN, (KeyValue("cfg", ValueType.JSON, '{"a":[1,2]}'),)),))
    await writer.write([message], [])
    stored = await gateway.services.pool.fetchval("SELECT json_v FROM ts_kv WHERE device_id = $1", device)
    assert stored == {"a": [1, 2]}


async def test_a_batch_meeting_stored_rows_is_merged_whole_and_moves_the_latest_values(
        gateway, writer, tenant, device) -> None:
    await writer.write([TelemetryMessage(device, (reading(JAN, t=1),))], [])
    # One row of this batch is stored already: the COPY fails, the batch is merged instead.
    await writer.write([TelemetryMessage(device, (reading(JAN, t=5, u="x"), reading(FEB, t=7)))], [])
    assert await rows(gateway.services.pool, device) == [
        ("t", JAN, None, 5, None, None), ("t", FEB, None, 7, None, None), ("u", JAN, None, None, None, "x")]
    assert await latest(gateway, device) == [("t", FEB, 7), ("u", JAN, "x")]
    # A rewrite of the newest reading moves the latest value too (equal timestamps: the later write wins).
    await writer.write([TelemetryMessage(device, (reading(FEB, t=8),))], [])
    assert await latest(gateway, device) == [("t", FEB, 8), ("u", JAN, "x")]
    # The merge stored the project's number as the COPY does.
    assert [r["project_no"] for r in await gateway.services.pool.fetch(
        "SELECT DISTINCT project_no FROM ts_kv WHERE device_id = $1", device)] == [
        await project_no(gateway.services.pool, tenant)]


async def test_telemetry_and_attributes_of_one_batch_are_stored_together(gateway, writer, device) -> None:
    await writer.write([TelemetryMessage(device, (reading(JAN, t=1),))],
                       [AttributeMessage(device, AttributeScope.CLIENT, JAN, (KeyValue("fw", ValueType.STRING, "2.0"),))])
    assert await rows(gateway.services.pool, device) == [("t", JAN, None, 1, None, None)]
    values = await gateway.services.attributes.read_attributes(device, AttributeScope.CLIENT, None)
    assert [(v.key, v.value) for v in values] == [("fw", "2.0")]


def test_a_connection_left_mid_operation_is_an_outage_not_a_bad_message() -> None:
    """Found by the fault suite (pg_terminate_backend during COPY): asyncpg's "cannot switch to
    state ...; another operation is in progress" was taken for a bad message, so the batch
    was split and, after three tries, a valid message refused. It is retried like an outage."""
    with pytest.raises(Unavailable):
        with translated():
            raise InternalClientError("cannot switch to state 21; another operation (2) is in progress")
