"""The ingest writer: COPY into a staging table, then an idempotent upsert.

Rows are keyed like ThingsBoard's ts_kv (device, key, ts) and the last write
wins, so a batch retried after an ambiguous commit leaves the same rows. The
latest-value table and client attributes are updated in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gateway.model import AttributeMessage, KeyValue, TelemetryMessage, ValueType
from storage.errors import translated
from storage.partitions import Partitions

_COLUMNS = ("device_id", "key", "ts", "bool_v", "long_v", "dbl_v", "str_v", "json_v")

_UPSERT_TS = """
INSERT INTO ts_kv
SELECT device_id, key, ts, bool_v, long_v, dbl_v, str_v, json_v::jsonb FROM ts_kv_stage
ON CONFLICT (device_id, key, ts) DO UPDATE SET
    bool_v = EXCLUDED.bool_v, long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v,
    str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v"""

_UPSERT_LATEST = """
INSERT INTO ts_kv_latest
SELECT DISTINCT ON (device_id, key) device_id, key, ts, bool_v, long_v, dbl_v, str_v, json_v::jsonb
FROM ts_kv_stage ORDER BY device_id, key, ts DESC
ON CONFLICT (device_id, key) DO UPDATE SET
    ts = EXCLUDED.ts, bool_v = EXCLUDED.bool_v, long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v,
    str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v
WHERE EXCLUDED.ts >= ts_kv_latest.ts"""

_UPSERT_ATTRIBUTES = """
INSERT INTO attribute_kv (device_id, scope, key, last_update_ts, bool_v, long_v, dbl_v, str_v, json_v)
SELECT d, s, k, t, b, l, f, v, j::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::bigint[],
            $7::double precision[], $8::text[], $9::text[]) AS u(d, s, k, t, b, l, f, v, j)
ON CONFLICT (device_id, scope, key) DO UPDATE SET
    last_update_ts = EXCLUDED.last_update_ts, bool_v = EXCLUDED.bool_v, long_v = EXCLUDED.long_v,
    dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v, json_v = EXCLUDED.json_v
WHERE EXCLUDED.last_update_ts >= attribute_kv.last_update_ts"""


def typed_columns(kv: KeyValue) -> tuple[object, object, object, object, object]:
    """(bool_v, long_v, dbl_v, str_v, json_v) with exactly one set."""
    match kv.type:
        case ValueType.BOOLEAN:
            return kv.value, None, None, None, None
        case ValueType.LONG:
            return None, kv.value, None, None, None
        case ValueType.DOUBLE:
            return None, None, kv.value, None, None
        case ValueType.STRING:
            return None, None, None, kv.value, None
        case _:
            return None, None, None, None, kv.value


def column_value(record: asyncpg.Record) -> object:
    """The one non-null value column of a row."""
    for column in ("bool_v", "long_v", "dbl_v", "str_v", "json_v"):
        if record[column] is not None:
            return record[column]
    return None


class KeyDictionary:
    """Key name -> key id, cached for the process's lifetime (keys are never removed)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def cached(self, key: str) -> int | None:
        return self._ids.get(key)

    async def resolve(self, pool: asyncpg.Pool | asyncpg.Connection, keys: set[str]) -> dict[str, int]:
        missing = [k for k in keys if k not in self._ids]
        if missing:
            await pool.execute(
                "INSERT INTO key_dictionary (key) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", missing
            )
            for record in await pool.fetch(
                "SELECT key, key_id FROM key_dictionary WHERE key = ANY($1::text[])", missing
            ):
                self._ids[record["key"]] = record["key_id"]
        return self._ids


class TelemetryWriter:
    def __init__(self, pool: asyncpg.Pool, keys: KeyDictionary) -> None:
        self._pool = pool
        self._keys = keys
        self._partitions = Partitions()

    async def write(self, telemetry: Sequence[TelemetryMessage], attributes: Sequence[AttributeMessage]) -> None:
        with translated():
            rows = await self._telemetry_rows(telemetry)
            if rows:
                await self._partitions.ensure(self._pool, {row[2] for row in rows})
            async with self._pool.acquire() as conn, conn.transaction():
                if rows:
                    await conn.copy_records_to_table("ts_kv_stage", records=rows, columns=_COLUMNS)
                    await conn.execute(_UPSERT_TS)
                    await conn.execute(_UPSERT_LATEST)
                if attributes:
                    await conn.execute(_UPSERT_ATTRIBUTES, *_attribute_columns(attributes))

    async def _telemetry_rows(self, telemetry: Sequence[TelemetryMessage]) -> list[tuple[object, ...]]:
        names = {kv.key for m in telemetry for r in m.readings for kv in r.values}
        ids = await self._keys.resolve(self._pool, names) if names else {}
        # Later messages win over earlier ones for the same (device, key, ts), and
        # one INSERT ... ON CONFLICT may not touch a row twice.
        unique: dict[tuple[str, int, int], tuple[object, ...]] = {}
        for message in telemetry:
            device = message.device_id
            for reading in message.readings:
                ts = reading.ts
                for kv in reading.values:
                    key_id, kind, value = ids[kv.key], kv.type, kv.value
                    # Inline rather than typed_columns(): this loop runs for every row.
                    if kind is ValueType.DOUBLE:
                        row = (device, key_id, ts, None, None, value, None, None)
                    elif kind is ValueType.LONG:
                        row = (device, key_id, ts, None, value, None, None, None)
                    elif kind is ValueType.BOOLEAN:
                        row = (device, key_id, ts, value, None, None, None, None)
                    elif kind is ValueType.STRING:
                        row = (device, key_id, ts, None, None, None, value, None)
                    else:
                        row = (device, key_id, ts, None, None, None, None, value)
                    unique[(device, key_id, ts)] = row
        return list(unique.values())


def _attribute_columns(messages: Sequence[AttributeMessage]) -> list[list[object]]:
    unique: dict[tuple[str, str, str], tuple[object, ...]] = {}
    for message in messages:
        for kv in message.values:
            unique[(message.device_id, message.scope.value, kv.key)] = (
                message.device_id, message.scope.value, kv.key, message.ts, *typed_columns(kv),
            )
    return [list(column) for column in zip(*unique.values())]
