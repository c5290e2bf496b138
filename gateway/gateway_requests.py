"""ThingsBoard's gateway API payloads (https://thingsboard.io/docs/reference/gateway-mqtt-api/):
what a gateway device sends for its sub-devices, checked and read, and the answers' JSON.

Every request names its sub-device by name; a malformed one is MalformedPayload, refused
before anything is done for any of the devices it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fleetgate.core import codec
from fleetgate.core.errors import MalformedPayload, PayloadTooLarge
from fleetgate.core.telemetry_model import AttributeValue

_MAX_NAME = 255


@dataclass(frozen=True, slots=True)
class Connect:
    device: str
    type: str | None  # the product's name; None: the configured default product


@dataclass(frozen=True, slots=True)
class AttributeRequest:
    request_id: int
    device: str
    client: bool  # client attributes; else shared ones
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RpcReply:
    device: str
    request_id: int
    data: Any


def connect(body: bytes) -> Connect:
    """``{"device": "A", "type": "T"}``."""
    root = _object(body)
    kind = root.get("type")
    if kind is not None and (not isinstance(kind, str) or not kind or len(kind) > _MAX_NAME):
        raise MalformedPayload("The type must be a non-empty string")
    return Connect(_device(root), kind)


def disconnect(body: bytes) -> str:
    """``{"device": "A"}``: the name."""
    return _device(_object(body))


def per_device(body: bytes, max_devices: int) -> dict[str, Any]:
    """``{"A": ..., "B": ...}`` (telemetry and client attributes): each device's own payload."""
    root = _object(body)
    if len(root) > max_devices:
        raise PayloadTooLarge(f"More than {max_devices} devices in one message")
    for name in root:
        _check_name(name)
    return root


def attribute_request(body: bytes) -> AttributeRequest:
    """``{"id": 1, "device": "A", "client": true, "key": "k"}``, or ``"keys": ["a", "b"]``."""
    root = _object(body)
    request_id = root.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool) or not 0 <= request_id < 2**31:
        raise MalformedPayload("The request id must be an integer")
    client = root.get("client", False)
    if not isinstance(client, bool):
        raise MalformedPayload("client must be true or false")
    if "keys" in root:
        keys = root["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise MalformedPayload("keys must be a list of strings")
    elif isinstance(root.get("key"), str):
        keys = [root["key"]]
    else:
        raise MalformedPayload('An attribute request names a "key" or "keys"')
    return AttributeRequest(request_id, _device(root), client, tuple(keys))


def attribute_response(request: AttributeRequest, values: list[AttributeValue]) -> bytes:
    """ThingsBoard's answer: ``"value"`` when one attribute was found, ``"values"`` when several."""
    body: dict[str, Any] = {"id": request.request_id, "device": request.device}
    if len(values) == 1:
        body["value"] = values[0].value
    elif values:
        body["values"] = {v.key: v.value for v in values}
    return orjson.dumps(body)


def rpc_reply(body: bytes) -> RpcReply:
    """``{"device": "A", "id": 1, "data": {...}}``: a sub-device's answer to a server-side call."""
    root = _object(body)
    request_id = root.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise MalformedPayload("The request id must be an integer")
    return RpcReply(_device(root), request_id, root.get("data"))


def _object(body: bytes) -> dict[str, Any]:
    root = codec.loads(body)
    if not isinstance(root, dict):
        raise MalformedPayload("A gateway message is a JSON object")
    return root


def _device(root: dict[str, Any]) -> str:
    name = root.get("device")
    if not isinstance(name, str):
        raise MalformedPayload('The message names no "device"')
    return _check_name(name)


def _check_name(name: str) -> str:
    if not name or len(name) > _MAX_NAME or "\x00" in name:
        raise MalformedPayload(f"A device name is 1 to {_MAX_NAME} characters")
    return name
