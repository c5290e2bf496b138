"""Device requests over MQTT that are answered rather than stored: attribute requests,
client-side RPC, and the provisioning request, each turned into the answer's bytes."""

from __future__ import annotations

from typing import Any

import orjson

from fleetgate.core import codec as payloads
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import GatewayError, InvalidInput
from fleetgate.core.model import DeviceIdentity, ProvisionRequest
from fleetgate.core.provision_json import request_from_json
from fleetgate.core.uplink import Uplink, split_keys
from fleetgate.protocols.mqtt.packets import Reason


def client_rpc_answer(downlink: Downlink, payload: Any) -> bytes:
    call = payload if isinstance(payload, dict) else {}
    return orjson.dumps(downlink.client_rpc(call.get("method"), call.get("params")))


async def attributes_answer(uplink: Uplink, device: DeviceIdentity, payload: Any) -> bytes:
    """ThingsBoard's {"clientKeys": "a,b", "sharedKeys": "c"} request, answered as
    {"client": {...}, "shared": {...}}."""
    keys = payload if isinstance(payload, dict) else {}
    client, shared = (split_keys(v) if isinstance(v, str) else None
                      for v in (keys.get("clientKeys"), keys.get("sharedKeys")))
    try:
        return orjson.dumps(await uplink.read_attributes(device, client, shared))
    except GatewayError as exc:
        return orjson.dumps({"error": exc.message})


def provision_request(payload: bytes) -> ProvisionRequest | int:
    """The request, or the PUBACK reason to refuse it with before closing (spec 1.4):
    an undecodable payload is 0x99; JSON lacking the key or secret, or naming an
    unknown credentials type, is ThingsBoard's runtime error, 0x83."""
    try:
        body = payloads.loads(payload)
    except InvalidInput:
        return Reason.PAYLOAD_FORMAT_INVALID
    if not isinstance(body, dict):
        return Reason.PAYLOAD_FORMAT_INVALID
    try:
        return request_from_json(body, source="mqtt")
    except InvalidInput:
        return Reason.IMPLEMENTATION_SPECIFIC_ERROR
