"""The OpenAPI entries of getting data out (docs/queries.md): several keys' history, raw or
aggregated; fleet queries; the live feed's WebSocket (protocols.http.openapi merges them)."""

from __future__ import annotations

from typing import Any

from fleetgate.core.fleet import DEFAULT_PAGE, MAX_PAGE
from fleetgate.core.timeseries import MAX_BUCKETS
from fleetgate.protocols.http.schema import obj as _object

_POINTS = {"type": "array", "items": _object("ts", "value", ts={"type": "integer", "description": "Unix ms"},
                                             value={"description": "Typed as stored; an aggregate is a number"})}

# (method, path, summary, details for protocols.http.openapi._management)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("GET", "/devices/{device_id}/telemetry", "Several keys' values over time, raw or aggregated (ThingsBoard's)",
     {"query": ("required_keys", "start_time", "end_time", "agg", "interval", "interval_type", "time_zone",
                "series_limit", "order"),
      "returns": "TelemetrySeriesByKey",
      "description": "Values with start_time <= ts < end_time. agg NONE: at most limit a key. Otherwise the range "
                     "is cut into buckets from start_time as ThingsBoard cuts them (interval ms; calendar weeks, "
                     "months or quarters by interval_type in time_zone; whole days in time_zone when both are "
                     "given), each bucket's value at its middle, empty buckets left out. AVG and SUM, MIN and MAX "
                     "take numbers and booleans (0, 1); COUNT every type; 400 IOTDA.000006 for strings or JSON in "
                     f"a bucket, or for more than {MAX_BUCKETS} buckets."}),
    ("GET", "/telemetry/latest", "The latest values of chosen keys for every device of the project",
     {"query": ("required_keys", "product_id_filter", "status", "fleet_limit", "marker"), "returns": "FleetLatest",
      "description": "Devices by id, descending; page.marker is where the next page starts (absent after the last)."}),
)

# (method, path, summary, details for protocols.http.openapi.Operation with the management tag)
WEBSOCKET_OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = tuple(
    ("GET", path, "Live feed: ThingsBoard's telemetry WebSocket commands (upgrade to WebSocket)",
     {"status": 101, "errors": (400,), "description": "The token in X-Auth-Token, or ThingsBoard's authCmd in the first message. "
                                    "tsSubCmds, attrSubCmds (CLIENT_SCOPE) and historyCmds, answered as "
                                    '{"subscriptionId", "errorCode", "errorMsg", "data": {key: [[ts, "value"]]}}. '
                                    "See docs/queries.md. 400 IOTDA.000006 for a request that is not a WebSocket "
                                    "upgrade."})
    for path in ("/api/ws/plugins/telemetry", "/api/ws"))

SCHEMAS: dict[str, Any] = {
    "TelemetrySeriesByKey": {"type": "object", "description": "Every key asked, with its points",
                             "additionalProperties": _POINTS},
    "FleetLatest": _object("devices", "page", devices={"type": "array", "items": _object(
        "device_id", "device_name", "product_id", "status", "telemetry",
        device_id={"type": "string"}, device_name={"type": "string"}, product_id={"type": "string"},
        status={"type": "string", "enum": ["ONLINE", "OFFLINE"]},
        telemetry={"type": "object", "additionalProperties": _object("ts", "value", ts={"type": "integer"}, value={})},
    )}, page=_object("count", count={"type": "integer"}, marker={"type": ["string", "null"]})),
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


PARAMETERS: dict[str, Any] = {
    "agg": _query("agg", {"type": "string", "enum": ["NONE", "AVG", "MIN", "MAX", "SUM", "COUNT"],
                          "default": "NONE"}, "Aggregation"),
    "interval": _query("interval", {"type": "integer", "minimum": 1}, "Bucket length in ms (interval_type "
                                                                     "MILLISECONDS)"),
    "interval_type": _query("interval_type", {"type": "string", "enum": [
        "MILLISECONDS", "WEEK", "WEEK_ISO", "MONTH", "QUARTER"], "default": "MILLISECONDS"}, "ThingsBoard's"),
    "time_zone": _query("time_zone", {"type": "string"}, "An IANA time zone for calendar buckets and whole days"),
    "fleet_limit": _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                          "Devices a page (else IOTDA.000017)"),
}
