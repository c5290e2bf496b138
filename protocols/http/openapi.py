"""The OpenAPI 3.1 document of every HTTP route, served at /openapi.json.

Written by hand, one entry per route; tests/test_openapi.py checks it against
the application's router, so no route goes undescribed and nothing described
is missing. Path parameters are taken from the path templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import orjson
from aiohttp import web

from fleetgate.protocols.http import openapi_claiming, openapi_commands, openapi_device_api, openapi_devices
from fleetgate.protocols.http import openapi_downlink, openapi_iotda, openapi_ota, openapi_provisioning
from fleetgate.protocols.http import openapi_forwarding, openapi_queries
from fleetgate.protocols.http.iotda import NO_MARKER, PREFIX
from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import path as _path
from fleetgate.protocols.http.schema import query as _query
from fleetgate.protocols.http.schema import ref as _ref
from fleetgate.protocols.http.schema import typed as _s

MANAGEMENT, DEVICE_API, OPERATIONS = "Management", "Device API", "Operations"
LIVE_FEED = "Live feed"  # WebSocket: the management token is checked on the connection, not on a path
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    tag: str
    summary: str
    query: tuple[str, ...] = ()
    body: str | None = None
    status: int = 200
    returns: str | None = None
    media: str = _JSON
    errors: tuple[int, ...] = ()
    description: str = ""
    accepted: str | None = None  # the schema of a 202 answered besides ``status``


def _management(method: str, path: str, summary: str, **details: Any) -> Operation:
    # Every management call can be malformed, unauthenticated, for another project, or meet a database outage;
    # one naming a resource can meet its absence, one with a body can be too large.
    common = {400, 401, 403, 503, *details.pop("errors", ())}
    if "{" in path:
        common.add(404)
    if "body" in details:
        common.add(413)
    errors = tuple(sorted(common))
    return Operation(method, PREFIX + path, MANAGEMENT, summary, errors=errors, **details)


OPERATIONS_DESCRIBED: tuple[Operation, ...] = (
    *(_management(method, path, summary, **details)
      for method, path, summary, details in openapi_devices.OPERATIONS),
    *(_management(method, path, summary, **details)
      for method, path, summary, details in openapi_commands.OPERATIONS),
    *(_management(method, path, summary, **details)
      for method, path, summary, details in openapi_provisioning.OPERATIONS),
    *(_management(method, path, summary, **details)
      for method, path, summary, details in openapi_claiming.OPERATIONS),
    *(Operation(method, path, DEVICE_API, summary, **details)
      for method, path, summary, details in openapi_claiming.DEVICE_OPERATIONS),
    *(_management(method, path, summary, **details) for method, path, summary, details in openapi_ota.OPERATIONS),
    *(_management(method, path, summary, **details)
      for method, path, summary, details in openapi_forwarding.OPERATIONS),
    *(_management(method, path, summary, **details)
      for method, path, summary, details in openapi_queries.OPERATIONS),
    *(Operation(method, path, LIVE_FEED, summary, **details)
      for method, path, summary, details in openapi_queries.WEBSOCKET_OPERATIONS),
    *(_management(method, path, summary, **details) for method, path, summary, details in openapi_iotda.OPERATIONS),
    *(Operation(method, path, DEVICE_API, summary, **details)
      for method, path, summary, details in openapi_ota.DEVICE_OPERATIONS),
    *(Operation(method, path, DEVICE_API, summary, **details)
      for method, path, summary, details in openapi_device_api.OPERATIONS),
    *(Operation(method, path, DEVICE_API, summary, **details)
      for method, path, summary, details in openapi_downlink.OPERATIONS),
    Operation("GET", "/metrics", OPERATIONS, "Prometheus metrics", returns="Metrics", media="text/plain"),
    Operation("GET", "/healthz", OPERATIONS, "Liveness", returns="Health"),
    Operation("GET", "/readyz", OPERATIONS, "Readiness", returns="Readiness",
              description="200 when the database answers, the ingest queue has room and the listeners accept; "
                          "503 otherwise, with the same body naming the failed check."),
    Operation("GET", "/openapi.json", OPERATIONS, "This document", returns="OpenApi"),
)


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        "error_code", "error_msg",
        error_code=_s("string", pattern=r"^IOTDA\.\d{6}$", examples=["IOTDA.000006"]),
        error_msg=_s("string"),
    ),
    "Page": _object("count", "marker", count=_s("integer", "Records matching, on every page"),
                    marker=_s(["string", "null"], "The last id of this page: pass it on to get the next")),
    "Health": _object("status", status=_s("string", enum=["ok"])),
    "Readiness": _object(
        "status", "checks", status=_s("string", enum=["ready", "not ready"]),
        checks=_s("object", "Each check (database, ingest_queue, listeners): \"ok\" or why not",
                  additionalProperties=_s("string")),
    ),
    "OpenApi": _s("object", "An OpenAPI 3.1 document"),
    "Metrics": _s("string", "Prometheus' text exposition format"),
}


PARAMETERS: dict[str, Any] = {
    "project_id": _path("project_id", "The project; the X-Auth-Token must belong to it"),
    "limit": _query("limit", _s("integer", minimum=1, maximum=50, default=10), "Page size (else IOTDA.000017)"),
    "marker": _query("marker", _s("string", pattern="^[0-9a-f]{24}$", default=NO_MARKER),
                     "Records with ids below this one: page.marker of the previous page"),
    "offset": _query("offset", _s("integer", minimum=0, maximum=500, default=0),
                     "Records to skip after the marker (else IOTDA.000018)"),
}


def _iotda_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("Error")}}}


RESPONSES: dict[str, Any] = {
    "BadRequest": _iotda_error(
        "Invalid input: IOTDA.000006 invalid data, IOTDA.000008 malformed JSON, IOTDA.000009 bad time, "
        "IOTDA.000010 start after end, IOTDA.000017 limit or IOTDA.000018 offset out of range"),
    "Unauthorized": _iotda_error("IOTDA.000002: X-Auth-Token missing or unknown"),
    "Forbidden": _iotda_error("IOTDA.000004: the token belongs to another project"),
    "NotFound": _iotda_error("IOTDA.000005: no such resource in this project"),
    "Conflict": _iotda_error("IOTDA.000007: a name, provision key or credentials already taken, or a product in "
                             "use; IOTDA.014016: the device is not connected"),
    "GatewayTimeout": _iotda_error("IOTDA.000021: the device did not answer in time"),
    "PayloadTooLarge": _iotda_error("IOTDA.000006: the body is over max_payload_bytes"),
    "Unavailable": _iotda_error("IOTDA.000003: the database is unavailable"),
}
_ERROR_RESPONSES = {
    MANAGEMENT: {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
                 413: "PayloadTooLarge", 503: "Unavailable", 504: "GatewayTimeout"},
    LIVE_FEED: {400: "BadRequest"},
    DEVICE_API: openapi_device_api.ERRORS,
}


def _success(op: Operation) -> dict[str, Any]:
    if op.returns is None:
        return {"description": "Done"}
    return {"description": "OK", "content": {op.media: {"schema": _ref(op.returns)}}}


def _operation(op: Operation) -> dict[str, Any]:
    path_parameters = re.findall(r"\{(\w+)\}", op.path)
    described: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": f"{op.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', op.path)}",
        "parameters": [{"$ref": f"#/components/parameters/{name}"} for name in (*path_parameters, *op.query)],
        "responses": {
            str(op.status): _success(op),
            **({"202": {"description": "Accepted", "content": {op.media: {"schema": _ref(op.accepted)}}}}
               if op.accepted else {}),
            **{str(status): {"$ref": f"#/components/responses/{_ERROR_RESPONSES[op.tag][status]}"}
               for status in op.errors},
        },
    }
    if op.description:
        described["description"] = op.description
    if op.body is not None:
        described["requestBody"] = {"required": True, "content": {_JSON: {"schema": _ref(op.body)}}}
    if op.tag in (MANAGEMENT, LIVE_FEED):
        described["security"] = [{"XAuthToken": []}]
    return described


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS_DESCRIBED:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "IoT gateway",
            "version": _version(),
            "description": "ThingsBoard's device API and an IoTDA-shaped management API. Management errors are "
                           '{"error_code": "IOTDA.xxxxxx", "error_msg": ...} with the HTTP status.',
        },
        "tags": [{"name": MANAGEMENT, "description": "Per project, with a token from `iot-gateway admin create-token`"},
                 {"name": DEVICE_API, "description": "ThingsBoard-compatible, for devices"},
                 {"name": OPERATIONS, "description": "Health, metrics and this document"},
                 {"name": LIVE_FEED, "description": "ThingsBoard's telemetry WebSocket commands (docs/queries.md)"}],
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **openapi_devices.SCHEMAS, **openapi_device_api.SCHEMAS,
                        **openapi_provisioning.SCHEMAS, **openapi_downlink.SCHEMAS,
                        **openapi_claiming.SCHEMAS, **openapi_commands.SCHEMAS, **openapi_ota.SCHEMAS,
                        **openapi_iotda.SCHEMAS, **openapi_queries.SCHEMAS, **openapi_forwarding.SCHEMAS},
            "parameters": {**PARAMETERS, **openapi_devices.PARAMETERS, **openapi_device_api.PARAMETERS,
                           **openapi_provisioning.PARAMETERS, **openapi_downlink.PARAMETERS,
                           **openapi_commands.PARAMETERS, **openapi_ota.PARAMETERS,
                           **openapi_iotda.PARAMETERS, **openapi_queries.PARAMETERS,
                           **openapi_forwarding.PARAMETERS},
            "responses": {**RESPONSES, **openapi_device_api.RESPONSES},
            "securitySchemes": {"XAuthToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}},
        },
    }


def _version() -> str:
    try:
        return metadata.version("iot-gateway")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def openapi_route() -> web.RouteDef:
    body = orjson.dumps(document())

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type=_JSON)

    return web.get("/openapi.json", serve)
