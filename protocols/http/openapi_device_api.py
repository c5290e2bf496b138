"""The OpenAPI entries of ThingsBoard's HTTP device API: provisioning, telemetry and attributes, by access
token or by client certificate, and its plain-text errors (protocols.http.openapi merges them)."""

from __future__ import annotations

from typing import Any

from fleetgate.protocols.http.openapi_devices import CREDENTIALS_TYPE, KEYS, VALUE
from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import path as _path
from fleetgate.protocols.http.schema import query as _query
from fleetgate.protocols.http.schema import ref as _ref
from fleetgate.protocols.http.schema import typed as _s

_NULLABLE_STRING = _s(["string", "null"])

# (method, path, summary, details for protocols.http.openapi.Operation under the device API's tag)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", "/api/v1/provision", "Claim provisioning (ThingsBoard)",
     {"body": "ProvisionRequest", "returns": "ProvisionResponse", "errors": (400, 413, 429),
      "description": "Refusals are answered with 200 and status NOT_FOUND or FAILURE, as ThingsBoard does."}),
    ("POST", "/api/v1/{token}/telemetry", "Send telemetry",
     {"body": "TelemetryPayload", "errors": (400, 401, 413, 429, 503),
      "description": "Answered once the rows are stored (ack = stored)."}),
    ("POST", "/api/v1/{token}/attributes", "Report client attributes",
     {"body": "AttributeValues", "errors": (400, 401, 413, 429, 503)}),
    ("GET", "/api/v1/{token}/attributes", "Request client and shared attributes",
     {"query": ("clientKeys", "sharedKeys"), "returns": "DeviceAttributes", "errors": (400, 401, 429, 503),
      "description": "Without keys, every client and shared attribute; sections without values are omitted. "
                     "400 for a key the gateway could never hold (over max_key_length, or U+0000)."}),
    *((method, f"/api/v1/me/{feature}", f"{summary} as the device of the client certificate",
       {"body": body, "returns": returns, "errors": (400, 401, 403, 413, 429, 503),
        "description": "HTTPS only: the device is the one its client certificate names (an X509_CERTIFICATE "
                       "credential, or a device CA's certificate, which registers the device by the CA's "
                       "template on its first request). 401 without a certificate, 403 when it is refused."})
      for method, feature, summary, body, returns in (
          ("POST", "telemetry", "Send telemetry", "TelemetryPayload", None),
          ("POST", "attributes", "Report client attributes", "AttributeValues", None),
          ("GET", "attributes", "Request client and shared attributes", None, "DeviceAttributes"))),
)

SCHEMAS: dict[str, Any] = {
    "AttributeValues": _s("object", "A flat object: key to value", additionalProperties=VALUE),
    "ProvisionRequest": _object(
        "provisionDeviceKey", "provisionDeviceSecret",
        deviceName=_s("string"), provisionDeviceKey=_s("string"), provisionDeviceSecret=_s("string"),
        credentialsType=CREDENTIALS_TYPE, token=_s("string"), clientId=_s("string"), username=_s("string"),
        password=_s("string"), hash=_s("string", "X509_CERTIFICATE: the PEM certificate"),
        gateway=_s("boolean"),
    ),
    "ProvisionResponse": _object(
        "status",
        status=_s("string", enum=["SUCCESS", "NOT_FOUND", "FAILURE"]),
        credentialsType=CREDENTIALS_TYPE,
        credentialsValue={"oneOf": [_s("string"), _object(clientId=_NULLABLE_STRING, userName=_NULLABLE_STRING,
                                                          password=_NULLABLE_STRING)]},
        errorMsg=_s("string"),
    ),
    "TelemetryPayload": {
        "description": "Values, a {ts, values} reading, or an array of either (ThingsBoard's grammar)",
        "oneOf": [_ref("AttributeValues"), _ref("TimedValues"), _s("array", items={
            "oneOf": [_ref("AttributeValues"), _ref("TimedValues")]})],
    },
    "TimedValues": _object("ts", "values", ts=_s("integer", "Unix milliseconds"), values=_ref("AttributeValues")),
    "DeviceAttributes": _object(client=_ref("AttributeValues"), shared=_ref("AttributeValues")),
}

PARAMETERS: dict[str, Any] = {
    "token": _path("token", "The device's access token"),
    "clientKeys": _query("clientKeys", _s("string"), KEYS + " of client attributes"),
    "sharedKeys": _query("sharedKeys", _s("string"), KEYS + " of shared attributes"),
}

_TEXT = {"text/plain": {"schema": _s("string")}}
RESPONSES: dict[str, Any] = {
    "DeviceBadRequest": {"description": "The reason, in plain text", "content": _TEXT},
    "DeviceUnauthorized": {"description": "Unknown access token; no body"},
    "DeviceForbidden": {"description": "The client certificate is not authorized", "content": _TEXT},
    "DevicePayloadTooLarge": {"description": "The body is over max_payload_bytes", "content": _TEXT},
    "DeviceTooManyRequests": {"description": "An abuse limit (docs/limits.md): this address's "
                                             "authentication failures or this provision key's attempts; retry "
                                             "after Retry-After",
                              "headers": {"Retry-After": {"schema": _s("integer")}}, "content": _TEXT},
    "DeviceRequestTimeout": {"description": "A long poll's timeout passed with nothing to answer; no body"},
    "DeviceNotFound": {"description": "No resource at this path", "content": _TEXT},
    "DeviceUnavailable": {"description": "The ingest queue is full or the database down; retry after Retry-After",
                          "headers": {"Retry-After": {"schema": _s("integer")}}, "content": _TEXT},
}
# A device API status -> its entry in RESPONSES
ERRORS = {400: "DeviceBadRequest", 401: "DeviceUnauthorized", 403: "DeviceForbidden", 404: "DeviceNotFound",
          413: "DevicePayloadTooLarge", 408: "DeviceRequestTimeout", 429: "DeviceTooManyRequests",
          503: "DeviceUnavailable"}
