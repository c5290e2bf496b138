"""Telemetry queries under /v5/iot/{project_id}/devices/{device_id}/telemetry: each key's latest
value, one key's history, and several keys' history raw or aggregated (docs/queries.md)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from fleetgate.core import errors
from fleetgate.core.device_service import split_keys
from fleetgate.core.fleet import DEFAULT_PAGE, MAX_PAGE, fleet_query
from fleetgate.core.telemetry_model import TimeseriesQuery
from fleetgate.core.telemetry_queries import DEFAULT_LIMIT, MAX_LIMIT, SeriesQueries, TelemetryQueryService, order_of
from fleetgate.core.timeseries import (
    Aggregation, SeriesQuery, aggregation_of, interval_type_of, plan_buckets, zone_of,
)
from fleetgate.protocols.http.iotda import ScopedRoute, int_param, json_response, keys_param

_MAX_TS = 2**63 - 1
# Keys one series query may name.
MAX_KEYS = 100


class TelemetryRoutes:
    def __init__(self, telemetry: TelemetryQueryService, series: SeriesQueries | None = None) -> None:
        self._telemetry = telemetry
        self._series = series

    def routes(self) -> list[ScopedRoute]:
        # "latest" first: it would otherwise match as a key.
        return [
            ("GET", "/devices/{device_id}/telemetry/latest", self.latest),
            ("GET", "/devices/{device_id}/telemetry/{key}", self.history),
            *((("GET", "/devices/{device_id}/telemetry", self.series), ("GET", "/telemetry/latest", self.fleet))
              if self._series is not None else ()),
        ]

    async def latest(self, request: web.Request, project_id: str) -> web.Response:
        values = await self._telemetry.latest(project_id, request.match_info["device_id"], keys_param(request))
        return json_response({"telemetry": [{"key": v.key, "ts": v.ts, "value": v.value} for v in values]})

    async def history(self, request: web.Request, project_id: str) -> web.Response:
        q = request.query
        query = TimeseriesQuery(
            key=request.match_info["key"],
            start_ts=int_param(q.get("start_time"), 0, 0, _MAX_TS, "start_time", errors.InvalidTime),
            end_ts=int_param(q.get("end_time"), _MAX_TS, 0, _MAX_TS, "end_time", errors.InvalidTime),
            limit=int_param(q.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT, "limit", errors.LimitOutOfRange),
            order=order_of(q.get("order")),
        )
        points = await self._telemetry.history(project_id, request.match_info["device_id"], query)
        return json_response({"key": query.key, "values": [{"ts": p.ts, "value": p.value} for p in points]})

    async def series(self, request: web.Request, project_id: str) -> web.Response:
        """ThingsBoard's getTimeseries: ``{key: [{ts, value}]}`` for every key asked."""
        assert self._series is not None
        query = series_query(request.query)
        found = await self._series.series(project_id, request.match_info["device_id"], query)
        return json_response({key: [{"ts": p.ts, "value": p.value} for p in points] for key, points in found.items()})

    async def fleet(self, request: web.Request, project_id: str) -> web.Response:
        """The latest values of chosen keys for every device of the project (or of a product)."""
        assert self._series is not None
        q = request.query
        query = fleet_query(
            project_id, keys_param(request), product_id=q.get("product_id"), status=q.get("status"),
            limit=int_param(q.get("limit"), DEFAULT_PAGE, 1, MAX_PAGE, "limit", errors.LimitOutOfRange),
            marker=q.get("marker"),
        )
        page = await self._series.fleet_latest(query)
        return json_response({
            "devices": [{
                "device_id": d.device_id, "device_name": d.device_name, "product_id": d.product_id,
                "status": d.status.value,
                "telemetry": {k: {"ts": v.ts, "value": v.value} for k, v in d.values.items()},
            } for d in page.devices],
            "page": {"count": page.count, "marker": page.marker},
        })


def series_query(q: Mapping[str, str]) -> SeriesQuery:
    keys = split_keys(q.get("keys"))
    if not keys:
        raise errors.InvalidInput("keys is required: one key or several, separated by commas")
    keys = list(dict.fromkeys(keys))
    if len(keys) > MAX_KEYS:
        raise errors.InvalidInput(f"keys names more than {MAX_KEYS} keys")
    agg = aggregation_of(q.get("agg"))
    if agg is not Aggregation.NONE and not (q.get("start_time") and q.get("end_time")):
        raise errors.InvalidTime("start_time and end_time are required when agg is not NONE")
    start = int_param(q.get("start_time"), 0, 0, _MAX_TS, "start_time", errors.InvalidTime)
    end = int_param(q.get("end_time"), _MAX_TS, 0, _MAX_TS, "end_time", errors.InvalidTime)
    if start > end:
        raise errors.InvalidTimeRange(f"start_time {start} is after end_time {end}")
    buckets = None
    if agg is not Aggregation.NONE:
        interval = int_param(q.get("interval"), 0, 1, _MAX_TS, "interval", errors.InvalidInput) or None
        buckets = plan_buckets(start, end, interval, interval_type_of(q.get("interval_type")),
                               zone_of(q.get("time_zone")))
    return SeriesQuery(
        keys=tuple(keys), start=start, end=end, agg=agg, buckets=buckets,
        limit=int_param(q.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT, "limit", errors.LimitOutOfRange),
        order=order_of(q.get("order")),
    )
