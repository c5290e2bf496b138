"""Reads of stored telemetry: latest values (ts_kv_latest) and one key's history (ts_kv)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from gateway.model import LatestTelemetry, TimeseriesPoint, TimeseriesQuery
from storage.errors import translated
from storage.telemetry import column_value

_LATEST = """SELECT k.key, l.ts, l.bool_v, l.long_v, l.dbl_v, l.str_v, l.json_v
             FROM ts_kv_latest l JOIN key_dictionary k ON k.key_id = l.key
             WHERE l.device_id = $1"""

# A key never stored has no key_id: the subquery is NULL and nothing matches,
# and nothing is added to key_dictionary by asking.
_HISTORY = """SELECT ts, bool_v, long_v, dbl_v, str_v, json_v FROM ts_kv
              WHERE device_id = $1 AND key = (SELECT key_id FROM key_dictionary WHERE key = $2)
                AND ts BETWEEN $3 AND $4
              ORDER BY ts {order} LIMIT $5"""


class TelemetryQueryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def latest(self, device_id: str, keys: Sequence[str] | None) -> list[LatestTelemetry]:
        query = _LATEST
        args: list[object] = [device_id]
        if keys is not None:
            query += " AND k.key = ANY($2::text[])"
            args.append(list(keys))
        with translated():
            records = await self._pool.fetch(query + " ORDER BY k.key", *args)
        return [LatestTelemetry(r["key"], r["ts"], column_value(r)) for r in records]

    async def history(self, device_id: str, query: TimeseriesQuery) -> list[TimeseriesPoint]:
        # order is a SortOrder member (ASC or DESC), never text from the caller.
        sql = _HISTORY.format(order=query.order.value)
        with translated():
            records = await self._pool.fetch(sql, device_id, query.key, query.start_ts, query.end_ts, query.limit)
        return [TimeseriesPoint(r["ts"], column_value(r)) for r in records]
