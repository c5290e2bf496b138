"""The OpenAPI entries of ThingsBoard's device claiming: the device's request and the operator's
completion and release (protocols.http.openapi merges them into /openapi.json)."""

from __future__ import annotations

from typing import Any

from fleetgate.protocols.http.schema import obj as _object

_CODES = ("400 IOTDA.000006 for a malformed body or customer; 403 IOTDA.014311 when the device's product does "
          "not allow claiming, 403 IOTDA.014312 for a wrong secret key; 404 IOTDA.014313 when the device has no "
          "claim in progress or it expired (404 IOTDA.000005: no such device); 409 IOTDA.014314 when it is "
          "claimed already.")

# (method, path, summary, details for protocols.http.openapi._management)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", "/devices/claim", "Complete a device's claim: assign it to a customer (ThingsBoard's claiming)",
     {"body": "ClaimRequest", "returns": "Device", "errors": (404, 409),
      "description": "The device asked to be claimed (v1/devices/me/claim, POST /api/v1/{token}/claim, CoAP, or "
                     "its gateway's v1/gateway/claim) with a secret key, valid for its durationMs. " + _CODES}),
    ("DELETE", "/devices/{device_id}/claim", "Release a claimed device: it has no customer any more",
     {"status": 204, "description": "Any claim in progress is dropped too; an unclaimed device stays as it is."}),
)

# (method, path, summary, details for protocols.http.openapi.Operation)
DEVICE_OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", "/api/v1/{token}/claim", "Ask to be claimed (ThingsBoard's claiming)",
     {"body": "DeviceClaimRequest", "errors": (400, 401, 413, 429, 503),
      "description": "Answered at once; the claim is kept (its secret hashed) for durationMs, then an operator "
                     "completes it with the secret. An empty body, or an absent field, takes ThingsBoard's "
                     "defaults: an empty secret key, 86,400,000 ms. A claim for a device claimed already, or whose "
                     "product does not allow claiming, is dropped."}),
)

SCHEMAS: dict[str, Any] = {
    "ClaimRequest": _object(
        "device_name", "customer",
        device_name={"type": "string", "description": "The device, in this project"},
        secret_key={"type": "string", "description": "The device's secretKey; empty when absent", "default": ""},
        customer={"type": "string", "description": "Who the device then belongs to", "minLength": 1,
                  "maxLength": 255},
    ),
    "DeviceClaimRequest": _object(
        secretKey={"type": "string", "default": "", "maxLength": 1024},
        durationMs={"type": "integer", "description": "How long the claim may be completed; not positive: the "
                    "default", "default": 86_400_000},
    ),
}
