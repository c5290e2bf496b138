"""The OpenAPI entries of IoTDA's device calls (protocols/http/management_iotda.py, and CreateCommand on
the commands route): protocols.http.openapi merges them into /openapi.json."""

from __future__ import annotations

from typing import Any

from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import ref as _ref

_ANY = {"description": "Any JSON"}
_STRING = {"type": "string"}
_NULLABLE = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "description": "UTC, yyyyMMdd'T'HHmmss'Z'"}
_OFFLINE = "409 (IOTDA.014016) when the device is not online; 504 (IOTDA.014111) when it does not answer in time."

# (method, path, summary, details for protocols.http.openapi._management)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", "/devices/{device_id}/action", "ResetDeviceSecret: a secret device's new secret",
     {"query": ("reset_action_id",), "body": "ResetSecret", "returns": "SecretReset",
      "description": "Generated when the body names none; the old secret stops working at once."}),
    ("POST", "/devices/{device_id}/messages", "CreateMessage: a message down, delivered asynchronously",
     {"body": "MessageCreate", "status": 201, "returns": "MessageCreated", "errors": (409,),
      "description": "Answered at once, PENDING; published on $oc/devices/{device_id}/sys/messages/down, then "
                     "DELIVERED, or FAILED when the device is not online."}),
    ("GET", "/devices/{device_id}/messages", "The device message log, newest first",
     {"query": ("direction",), "returns": "MessageList"}),
    ("GET", "/devices/{device_id}/messages/{message_id}", "A message, with its status", {"returns": "DeviceMessage"}),
    ("PUT", "/devices/{device_id}/properties", "UpdateProperties: set the device's properties",
     {"body": "PropertiesSet", "returns": "DeviceAnswer", "errors": (409, 504),
      "description": "Synchronous: the device's answer from properties/set/response. " + _OFFLINE}),
    ("GET", "/devices/{device_id}/properties", "ListProperties: ask the device for its properties",
     {"query": ("service_id",), "returns": "DeviceAnswer", "errors": (409, 504),
      "description": "Synchronous: the device's answer from properties/get/response. " + _OFFLINE}),
    ("GET", "/devices/{device_id}/shadow", "ShowDeviceShadow", {"returns": "Shadow"}),
    ("PUT", "/devices/{device_id}/shadow", "UpdateDeviceShadowDesiredData", {
        "body": "ShadowUpdate", "returns": "Shadow", "errors": (409,),
        "description": "The desired properties are merged (null removes one); 409 when version is given and "
                       "is not the stored one. The device reads them with shadow/get."}),
)

_SHADOW_PROPERTIES = _object("properties", "event_time", properties={"type": ["object", "null"]}, event_time=_TIME)
SCHEMAS: dict[str, Any] = {
    "ResetSecret": _object(secret={"type": "string", "pattern": "^[A-Za-z0-9_-]{8,32}$"},
                           force_disconnect={"type": "boolean"}),
    "SecretReset": _object("device_id", "secret", device_id=_STRING, secret=_STRING, secret_type=_STRING),
    "MessageCreate": _object("message", message=_ANY, message_id=_STRING, name=_STRING, ttl={
        "type": "integer", "minimum": 0, "maximum": 1440, "multipleOf": 5, "default": 1440,
        "description": "Minutes the message waits for an offline device (then TIMEOUT); 0: sent now or FAILED"}),
    "MessageResult": _object("status", "created_time", status=_STRING, created_time=_TIME, finished_time=_TIME),
    "MessageCreated": _object("message_id", "result", message_id=_STRING, result=_ref("MessageResult")),
    "DeviceMessage": _object(
        "message_id", "message", "direction", "status", "created_time",
        message_id=_STRING, name=_NULLABLE, message=_ANY,
        direction={"type": "string", "enum": ["DOWN", "UP", "EVENT"]},
        event={"type": ["string", "null"], "description": "An event's service_id/event_type"},
        status={"type": "string", "enum": ["PENDING", "DELIVERED", "FAILED", "TIMEOUT", "RECEIVED"]},
        error_info={"type": ["object", "null"]}, created_time=_TIME, finished_time=_TIME),
    "MessageList": _object("device_id", "messages", device_id=_STRING,
                           messages={"type": "array", "items": _ref("DeviceMessage")}),
    "PropertiesSet": _object("services", services={"type": "array", "items": _object(
        "service_id", service_id=_STRING, properties={"type": "object"})}),
    "DeviceAnswer": _object("request_id", "response", request_id=_STRING, response=_ANY),
    "ShadowService": _object("service_id", "desired", "reported", "version", service_id=_STRING,
                             desired=_SHADOW_PROPERTIES, reported=_SHADOW_PROPERTIES, version={"type": "integer"}),
    "Shadow": _object("device_id", "shadow", device_id=_STRING,
                      shadow={"type": "array", "items": _ref("ShadowService")}),
    "ShadowUpdate": _object("shadow", shadow={"type": "array", "minItems": 1, "items": _object(
        "service_id", "desired", service_id=_STRING, desired={"type": "object"}, version={"type": "integer"})}),
}

PARAMETERS: dict[str, Any] = {
    "message_id": {"name": "message_id", "in": "path", "required": True, "schema": _STRING},
    "reset_action_id": {"name": "action_id", "in": "query", "required": True, "description": "resetSecret",
                        "schema": {"type": "string", "enum": ["resetSecret"]}},
    "direction": {"name": "direction", "in": "query", "description": "DOWN (the default), UP or EVENT",
                  "schema": {"type": "string", "enum": ["DOWN", "UP", "EVENT"]}},
    "service_id": {"name": "service_id", "in": "query", "schema": _STRING},
}
