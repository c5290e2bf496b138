"""Telemetry queries under /v5/iot/{project_id}/devices/{device_id}/telemetry."""

from __future__ import annotations

from aiohttp import web

from fleetgate.core import errors
from fleetgate.core.model import TimeseriesQuery
from fleetgate.core.telemetry_queries import DEFAULT_LIMIT, MAX_LIMIT, TelemetryQueryService, order_of
from fleetgate.protocols.http.iotda import ScopedRoute, int_param, json_response, keys_param

_MAX_TS = 2**63 - 1


class TelemetryRoutes:
    def __init__(self, telemetry: TelemetryQueryService) -> None:
        self._telemetry = telemetry

    def routes(self) -> list[ScopedRoute]:
        # "latest" first: it would otherwise match as a key.
        return [
            ("GET", "/devices/{device_id}/telemetry/latest", self.latest),
            ("GET", "/devices/{device_id}/telemetry/{key}", self.history),
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
