"""The OpenAPI entries of server-side RPC to devices: lightweight calls, and ThingsBoard's persistent
calls with their list, show and delete (protocols.http.openapi merges them into /openapi.json)."""

from __future__ import annotations

from typing import Any

from fleetgate.core.downlink import MAX_RPC_TIMEOUT
from fleetgate.core.persistent_rpc import MAX_RETRIES
from fleetgate.core.rpc_calls import RpcStatus
from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import ref as _ref

_STATES = ("QUEUED: waiting for the device to listen; SENT: handed to its connection; DELIVERED: the device has "
           "it; SUCCESSFUL: answered (a one-way call: delivered); TIMEOUT: no answer within timeout, on the last "
           "retry; EXPIRED: expiration_time passed first; FAILED: it could not be sent.")

# (method, path, summary, details for protocols.http.openapi._management)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", "/devices/{device_id}/commands", "Server-side RPC to a device: at once, or persistent",
     {"body": "CommandRequest", "returns": "CommandResponse", "accepted": "CommandAccepted", "errors": (409, 504),
      "description": "ThingsBoard's RPC: published to the device's session (MQTT v1/devices/me/rpc/request/{id}, "
                     "an RPC long poll, a CoAP RPC observation); a two-way call answers with the device's reply "
                     "from v1/devices/me/rpc/response/{id}, 504 (IOTDA.000021) when none came within timeout; a "
                     "one-way call answers 202 once sent. 409 (IOTDA.014016) when the device is not connected. "
                     "With persistent: true, the call is stored and answered 202 with its command_id at once; it is "
                     "sent when the device is, or next becomes, connected and listening for RPC, whichever process "
                     "holds it, and is never delivered twice. " + _STATES}),
    ("GET", "/devices/{device_id}/commands", "List a device's persistent calls, newest first",
     {"query": ("limit", "marker", "offset"), "returns": "CommandList"}),
    ("GET", "/devices/{device_id}/commands/{command_id}", "Show a persistent call: its status and response",
     {"returns": "PersistentCommand"}),
    ("DELETE", "/devices/{device_id}/commands/{command_id}", "Delete a persistent call", {"status": 204,
     "description": "A call not yet sent is then never sent; the answer to one under way is dropped."}),
)

_INTEGER = {"type": "integer"}
SCHEMAS: dict[str, Any] = {
    "CommandRequest": _object(
        method={"type": "string", "description": "Required unless command_name is given"},
        params={"description": "Any JSON, passed to the device as it is"},
        command_name={"type": "string", "description": "IoTDA's CreateCommand (with service_id and paras): "
                      "synchronous, waits iotda_command_timeout_seconds; a ThingsBoard device takes it as RPC "
                      "(method = command_name, params = paras)"},
        service_id={"type": "string"}, paras={"description": "Any JSON: the command's parameters"},
        timeout={"type": "integer", "description": "Milliseconds to wait for a two-way call's reply (each attempt "
                 "of a persistent call)", "default": 10_000, "minimum": 1, "maximum": round(MAX_RPC_TIMEOUT * 1000)},
        oneway={"type": "boolean", "description": "Send without waiting for a reply", "default": False},
        persistent={"type": "boolean", "description": "Keep the call until the device listens", "default": False},
        expiration_time={"type": "integer", "description": "Persistent: Unix milliseconds after which the call "
                         "is EXPIRED; later than now, within ten years. Absent: now + rpc_persistent_ttl_seconds"},
        retries={"type": "integer", "minimum": 0, "maximum": MAX_RETRIES, "description": "Persistent: times the "
                 "call is sent again when unanswered. Absent: rpc_persistent_retries"},
    ),
    "CommandResponse": _object("response", response={"description": "The device's reply, any JSON"},
                               command_id={"type": "string", "description": "IoTDA's CreateCommand: the request "
                                           "id the device saw in commands/request_id={command_id}"}),
    "CommandAccepted": {"description": "{} for a one-way call once sent; the stored call for a persistent one",
                        "oneOf": [{"type": "object", "maxProperties": 0}, _ref("PersistentCommand")]},
    "PersistentCommand": _object(
        "command_id", "device_id", "method", "params", "oneway", "persistent", "status", "response", "timeout",
        "expiration_time", "retries", "attempts", "create_time",
        command_id={"type": "string"}, device_id={"type": "string"}, method={"type": "string"},
        params={"description": "Any JSON, as the operator sent it"}, oneway={"type": "boolean"},
        persistent={"type": "boolean"},
        status={"type": "string", "enum": [s.value for s in RpcStatus], "description": _STATES},
        response={"description": "The device's reply once SUCCESSFUL (null before, and for a one-way call)"},
        timeout=_INTEGER | {"description": "Milliseconds each attempt waits for the reply"},
        expiration_time=_INTEGER | {"description": "Unix milliseconds"},
        retries=_INTEGER, attempts=_INTEGER | {"description": "Attempts delivered so far"},
        create_time={"type": "string", "description": "UTC, yyyyMMdd'T'HHmmss'Z'"},
    ),
    "CommandList": _object("commands", "page", commands={"type": "array", "items": _ref("PersistentCommand")},
                           page=_ref("Page")),
}

PARAMETERS: dict[str, Any] = {
    "command_id": {"name": "command_id", "in": "path", "required": True, "description": "A persistent call's id",
                   "schema": {"type": "string"}},
}
