"""Reads of stored telemetry (ts_kv): each key's latest value, and one key's history."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from fleetgate.core.telemetry_model import LatestTelemetry, TimeseriesPoint, TimeseriesQuery
from fleetgate.storage.errors import translated
from fleetgate.storage.telemetry import column_value

# The device's project number, asked first so that the queries below name it as a
# parameter: the planner then prunes ts_kv to that project's partitions when it plans,
# instead of planning (and locking) every project's partitions. A device not
# registered has none, and no telemetry either.
_PROJECT_NO = "SELECT p.no FROM devices d JOIN projects p ON p.id = d.project_id WHERE d.id = $1"

# A device's keys, by a loose index scan of ts_kv's primary key (device_id, key, ts, project_no):
# each step finds the next key in one index probe, however many rows each key has.
# Then each key's newest row, one more probe. ThingsBoard's latest-value rule holds:
# the newest timestamp wins, and a (device, key, ts) has one row, the last written.
_LATEST = """WITH RECURSIVE device_keys(key) AS (
                 (SELECT key FROM ts_kv WHERE project_no = $3 AND device_id = $1 ORDER BY key LIMIT 1)
                 UNION ALL
                 SELECT (SELECT t.key FROM ts_kv t
                         WHERE t.project_no = $3 AND t.device_id = $1 AND t.key > d.key ORDER BY t.key LIMIT 1)
                 FROM device_keys d WHERE d.key IS NOT NULL)
             SELECT k.key, l.ts, l.bool_v, l.long_v, l.dbl_v, l.str_v, l.json_v
             FROM device_keys d
             JOIN key_dictionary k ON k.key_id = d.key
             CROSS JOIN LATERAL (
                 SELECT ts, bool_v, long_v, dbl_v, str_v, json_v FROM ts_kv t
                 WHERE t.project_no = $3 AND t.device_id = $1 AND t.key = d.key ORDER BY t.ts DESC LIMIT 1) l
             WHERE $2::text[] IS NULL OR k.key = ANY($2)
             ORDER BY k.key"""

# A key never stored has no key_id: the subquery is NULL and nothing matches,
# and nothing is added to key_dictionary by asking.
_HISTORY = """SELECT ts, bool_v, long_v, dbl_v, str_v, json_v FROM ts_kv
              WHERE project_no = $6 AND device_id = $1 AND key = (SELECT key_id FROM key_dictionary WHERE key = $2)
                AND ts BETWEEN $3 AND $4
              ORDER BY ts {order} LIMIT $5"""


class TelemetryQueryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def latest(self, device_id: str, keys: Sequence[str] | None) -> list[LatestTelemetry]:
        with translated():
            async with self._pool.acquire() as conn:
                project_no = await conn.fetchval(_PROJECT_NO, device_id)
                if project_no is None:
                    return []
                records = await conn.fetch(_LATEST, device_id, None if keys is None else list(keys), project_no)
        return [LatestTelemetry(r["key"], r["ts"], column_value(r)) for r in records]

    async def history(self, device_id: str, query: TimeseriesQuery) -> list[TimeseriesPoint]:
        # order is a SortOrder member (ASC or DESC), never text from the caller.
        sql = _HISTORY.format(order=query.order.value)
        with translated():
            async with self._pool.acquire() as conn:
                project_no = await conn.fetchval(_PROJECT_NO, device_id)
                if project_no is None:
                    return []
                records = await conn.fetch(
                    sql, device_id, query.key, query.start_ts, query.end_ts, query.limit, project_no)
        return [TimeseriesPoint(r["ts"], column_value(r)) for r in records]
