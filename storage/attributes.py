"""Attribute reads, and the writes an operator makes through the management API."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from fleetgate.core.telemetry_model import AttributeScope, AttributeValue, KeyValue
from fleetgate.storage.errors import translated
from fleetgate.storage.telemetry import column_value, typed_columns


class AttributeStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def read_attributes(
        self, device_id: str, scope: AttributeScope, keys: Sequence[str] | None
    ) -> list[AttributeValue]:
        query = "SELECT * FROM attribute_kv WHERE device_id = $1 AND scope = $2"
        args: list[object] = [device_id, scope.value]
        if keys is not None:
            query += " AND key = ANY($3::text[])"
            args.append(list(keys))
        with translated():
            records = await self._pool.fetch(query + " ORDER BY key", *args)
        return [AttributeValue(r["key"], column_value(r), r["last_update_ts"]) for r in records]

    async def write_attributes(
        self, device_id: str, scope: AttributeScope, ts: int, values: Sequence[KeyValue]
    ) -> None:
        with translated():
            await self._pool.executemany(
                """INSERT INTO attribute_kv (device_id, scope, key, last_update_ts, bool_v, long_v, dbl_v, str_v, json_v)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)
                   ON CONFLICT (device_id, scope, key) DO UPDATE SET
                       last_update_ts = EXCLUDED.last_update_ts, bool_v = EXCLUDED.bool_v,
                       long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, str_v = EXCLUDED.str_v,
                       json_v = EXCLUDED.json_v""",
                [(device_id, scope.value, kv.key, ts, *typed_columns(kv)) for kv in values],
            )

    async def delete_attributes(self, device_id: str, scope: AttributeScope, keys: Sequence[str]) -> list[str]:
        with translated():
            records = await self._pool.fetch(
                "DELETE FROM attribute_kv WHERE device_id = $1 AND scope = $2 AND key = ANY($3::text[]) RETURNING key",
                device_id, scope.value, list(keys),
            )
        return [r["key"] for r in records]
