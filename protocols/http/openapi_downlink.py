"""The OpenAPI entries of the device API's RPC and long polls (protocols.http.openapi merges them
into /openapi.json)."""

from __future__ import annotations

from typing import Any

from fleetgate.protocols.http.long_polls import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS
from fleetgate.protocols.http.schema import obj as _object

_POLL = ("A long poll: answered with the first {what} after the request, or 408 with no body when none came "
         "within timeout. While it waits, the device counts as connected. At most http_max_long_polls wait at "
         "once (else 429 with Retry-After); 400 for a timeout that is not a number.")

# (method, path, summary, details for protocols.http.openapi.Operation under the device API's tag)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("GET", "/api/v1/{token}/rpc", "Wait for a server-side RPC request",
     {"query": ("timeout",), "returns": "RpcRequest", "errors": (400, 401, 408, 429, 503),
      "description": _POLL.format(what="operator's call") + " Answer it with POST /api/v1/{token}/rpc/{id}."}),
    ("POST", "/api/v1/{token}/rpc/{request_id}", "Answer a server-side RPC request",
     {"body": "RpcAnswer", "errors": (400, 401, 404, 413, 429),
      "description": "The body, any JSON, is the operator's reply; an answer nobody waits for is dropped. "
                     "An id that is not a decimal number below 2^31 names no resource: 404."}),
    ("POST", "/api/v1/{token}/rpc", "Client-side RPC", {"body": "ClientRpc", "returns": "RpcAnswer",
                                                        "errors": (400, 401, 413, 429),
                                                        "description": "getSessionLimits is answered with "
                                                                       "this gateway's limits; any other "
                                                                       "method with {\"error\": ...}."}),
    ("GET", "/api/v1/{token}/attributes/updates", "Wait for a shared-attribute update",
     {"query": ("timeout",), "returns": "AttributeUpdate", "errors": (400, 401, 408, 429, 503),
      "description": _POLL.format(what="shared-attribute update")}),
)

SCHEMAS: dict[str, Any] = {
    "RpcRequest": _object("id", "method", id={"type": "integer"}, method={"type": "string"},
                          params={"description": "Any JSON, as the operator sent it"}),
    "RpcAnswer": {"description": "Any JSON"},
    "ClientRpc": _object("method", method={"type": "string"}, params={"description": "Any JSON"}),
    "AttributeUpdate": {"type": "object", "description": 'Updated keys with their values; "deleted": [keys] '
                                                         "when keys were deleted"},
}

PARAMETERS: dict[str, Any] = {
    "timeout": {"name": "timeout", "in": "query", "required": False,
                "description": f"Milliseconds to wait; 0 or absent: {DEFAULT_TIMEOUT_MS}, at most {MAX_TIMEOUT_MS}",
                "schema": {"type": "number", "minimum": 0, "default": DEFAULT_TIMEOUT_MS}},
    "request_id": {"name": "request_id", "in": "path", "required": True, "description": "The request's id",
                   "schema": {"type": "integer"}},
}
