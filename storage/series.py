"""Several keys of one device over time, raw or aggregated in PostgreSQL (fleetgate.core.timeseries).

One statement a query, whatever the number of keys and buckets: the rows of the time range are
read once, in the order of ts_kv's primary key (device_id, key, ts), and grouped by key and bucket.
A bucket is ``(ts - start) / interval`` for fixed intervals, or the bucket of ``ts`` among calendar
bounds by ``width_bucket`` (a binary search of the bounds array).

Booleans count as 0 and 1 (as ThingsBoard's aggregation does), and then as longs: the result of
MIN, MAX and SUM is a long unless a double was among the values, AVG is always a double, COUNT
counts values of every type. Strings and JSON are counted apart, for the core to refuse them.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from fleetgate.core.telemetry_model import TimeseriesPoint
from fleetgate.core.timeseries import Aggregation, BucketValue, SeriesQuery
from fleetgate.storage.errors import translated
from fleetgate.storage.telemetry import column_value

# The device's project number, when the device is the project's: named as a parameter in the
# queries below, so that the planner prunes ts_kv to the project's partitions
# (storage/telemetry_queries.py says why).
_PROJECT_NO = "SELECT p.no FROM devices d JOIN projects p ON p.id = d.project_id WHERE d.id = $1 AND p.id = $2"

# A key never stored has no key_id, and is not added to key_dictionary by asking.
_RAW = """SELECT k.key, t.ts, t.bool_v, t.long_v, t.dbl_v, t.str_v, t.json_v
          FROM key_dictionary k
          CROSS JOIN LATERAL (
              SELECT ts, bool_v, long_v, dbl_v, str_v, json_v FROM ts_kv
              WHERE project_no = $1 AND device_id = $2 AND key = k.key_id AND ts >= $4 AND ts < $5
              ORDER BY ts {order} LIMIT $6) t
          WHERE k.key = ANY($3::text[])"""

# $1 project number, $2 device, $3 keys, $4 start, $5 end, $6 interval or bounds.
_FIXED_BUCKET = "(t.ts - $4) / $6::bigint"
_CALENDAR_BUCKET = "width_bucket(t.ts, $6::bigint[]) - 1"

_NUMBER = "coalesce(t.long_v, t.bool_v::int)"
_VALUES = {
    # (long result, double result): exactly one is not null for a bucket with numbers.
    Aggregation.AVG: ("NULL::numeric",
                      f"(coalesce(sum({_NUMBER}), 0) + coalesce(sum(t.dbl_v), 0))"
                      f" / nullif(count({_NUMBER}) + count(t.dbl_v), 0)"),
    Aggregation.SUM: (f"CASE WHEN count(t.dbl_v) = 0 THEN sum({_NUMBER}) END",
                      f"CASE WHEN count(t.dbl_v) > 0 THEN sum(t.dbl_v) + coalesce(sum({_NUMBER}), 0) END"),
    Aggregation.MIN: (f"CASE WHEN count(t.dbl_v) = 0 THEN min({_NUMBER}) END",
                      f"CASE WHEN count(t.dbl_v) > 0 THEN least(min(t.dbl_v), min({_NUMBER})) END"),
    Aggregation.MAX: (f"CASE WHEN count(t.dbl_v) = 0 THEN max({_NUMBER}) END",
                      f"CASE WHEN count(t.dbl_v) > 0 THEN greatest(max(t.dbl_v), max({_NUMBER})) END"),
    Aggregation.COUNT: ("count(*)", "NULL::float8"),
}

_AGGREGATED = """SELECT k.key, {bucket} AS bucket, {long} AS long_value, ({double})::float8 AS dbl_value,
                        count(t.str_v) + count(t.json_v) AS non_numeric
                 FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key
                 WHERE t.project_no = $1 AND t.device_id = $2
                   AND t.key IN (SELECT key_id FROM key_dictionary WHERE key = ANY($3::text[]))
                   AND t.ts >= $4 AND t.ts < $5
                 GROUP BY k.key, bucket
                 ORDER BY k.key, bucket"""


class SeriesStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def raw_series(
        self, project_id: str, device_id: str, query: SeriesQuery
    ) -> dict[str, list[TimeseriesPoint]] | None:
        # order is a SortOrder member (ASC or DESC), never text from the caller.
        sql = _RAW.format(order=query.order.value)
        with translated():
            async with self._pool.acquire() as conn:
                project_no = await conn.fetchval(_PROJECT_NO, device_id, project_id)
                if project_no is None:
                    return None
                records = await conn.fetch(
                    sql, project_no, device_id, list(query.keys), query.start, query.end, query.limit)
        found: dict[str, list[TimeseriesPoint]] = {}
        for r in records:
            found.setdefault(r["key"], []).append(TimeseriesPoint(r["ts"], column_value(r)))
        return found

    async def aggregated_series(self, project_id: str, device_id: str, query: SeriesQuery) -> list[BucketValue] | None:
        buckets = query.buckets
        assert buckets is not None and query.agg is not Aggregation.NONE
        long, double = _VALUES[query.agg]
        if buckets.bounds:
            sql = _AGGREGATED.format(bucket=_CALENDAR_BUCKET, long=long, double=double)
            by: object = list(buckets.bounds)
        else:
            sql = _AGGREGATED.format(bucket=_FIXED_BUCKET, long=long, double=double)
            by = buckets.interval
        with translated():
            async with self._pool.acquire() as conn:
                project_no = await conn.fetchval(_PROJECT_NO, device_id, project_id)
                if project_no is None:
                    return None
                records = await conn.fetch(
                    sql, project_no, device_id, list(query.keys), buckets.start, buckets.end, by)
        return [BucketValue(r["key"], r["bucket"], _number(r["long_value"], r["dbl_value"]), r["non_numeric"])
                for r in records]


def _number(long: Decimal | int | None, double: float | None) -> int | float | None:
    """sum() of bigints is numeric in PostgreSQL (it does not overflow): an int here."""
    if long is not None:
        return int(long)
    return double
