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

from fleetgate.core.telemetry_queries import DEFAULT_LIMIT, MAX_LIMIT
from fleetgate.protocols.http import openapi_claiming, openapi_commands, openapi_downlink, openapi_provisioning
from fleetgate.protocols.http import openapi_iotda, openapi_ota, openapi_queries
from fleetgate.protocols.http import openapi_forwarding
from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import ref as _ref
from fleetgate.protocols.http.iotda import NO_MARKER, PREFIX

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
    _management("POST", "/products", "Create a product (device profile) with its provisioning settings",
                body="ProductCreate", status=201, returns="Product", errors=(409,)),
    _management("GET", "/products", "List products, newest first", query=("limit", "marker", "offset"),
                returns="ProductList"),
    _management("GET", "/products/{product_id}", "Show a product", returns="Product"),
    _management("PUT", "/products/{product_id}", "Change a product's fields", body="ProductUpdate",
                returns="Product", errors=(409,)),
    _management("DELETE", "/products/{product_id}", "Delete a product that has no devices", status=204,
                errors=(409,)),
    _management("POST", "/devices", "Register a device with its credentials", body="DeviceCreate", status=201,
                returns="Device", errors=(404, 409),
                description="Without auth_info, or with an ACCESS_TOKEN one naming no access_token, the gateway "
                            "generates a token. The answer shows the clear access_token or password once. For a "
                            "product with the CHECK_PRE_PROVISIONED_DEVICES strategy the device is pre-provisioned: "
                            "its first provisioning request is answered with exactly these credentials."),
    _management("GET", "/devices", "List devices, newest first",
                query=("limit", "marker", "offset", "product_id_filter", "device_name", "status", "gateway_id",
                       "customer"),
                returns="DeviceList"),
    _management("GET", "/devices/{device_id}", "Show a device", returns="Device"),
    _management("PUT", "/devices/{device_id}", "Change a device; auth_info replaces its credentials",
                body="DeviceUpdate", returns="Device", errors=(409,)),
    _management("DELETE", "/devices/{device_id}", "Delete a device with its credentials, attributes and telemetry",
                status=204),
    _management("GET", "/devices/{device_id}/attributes", "Read one scope's attributes",
                query=("scope", "keys"), returns="AttributeList"),
    _management("POST", "/devices/{device_id}/attributes", "Set shared or server attributes",
                query=("writable_scope",), body="AttributeValues",
                description="Values are typed as devices' attributes are: booleans, integers, doubles, strings "
                            "(numeric strings become numbers) and JSON; null values are skipped."),
    _management("DELETE", "/devices/{device_id}/attributes", "Delete shared or server attributes",
                query=("writable_scope", "required_keys"), status=204),
    _management("GET", "/devices/{device_id}/telemetry/latest", "Each key's latest value", query=("keys",),
                returns="LatestTelemetryList"),
    _management("GET", "/devices/{device_id}/telemetry/{key}", "A key's values over a time range",
                query=("start_time", "end_time", "series_limit", "order"), returns="TelemetrySeries",
                description="Values with start_time <= ts <= end_time, at most limit of them, by ts in the order "
                            "asked. A key named 'latest' cannot be asked for here."),
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
    Operation("POST", "/api/v1/provision", DEVICE_API, "Claim provisioning (ThingsBoard)", body="ProvisionRequest",
              returns="ProvisionResponse", errors=(400, 413, 429),
              description="Refusals are answered with 200 and status NOT_FOUND or FAILURE, as ThingsBoard does."),
    Operation("POST", "/api/v1/{token}/telemetry", DEVICE_API, "Send telemetry", body="TelemetryPayload",
              errors=(400, 401, 413, 429, 503), description="Answered once the rows are stored (ack = stored)."),
    Operation("POST", "/api/v1/{token}/attributes", DEVICE_API, "Report client attributes",
              body="AttributeValues", errors=(400, 401, 413, 429, 503)),
    Operation("GET", "/api/v1/{token}/attributes", DEVICE_API, "Request client and shared attributes",
              query=("clientKeys", "sharedKeys"), returns="DeviceAttributes", errors=(400, 401, 429, 503),
              description="Without keys, every client and shared attribute; sections without values are omitted. "
                          "400 for a key the gateway could never hold (over max_key_length, or U+0000)."),
    *(Operation(method, f"/api/v1/me/{feature}", DEVICE_API, f"{summary} as the device of the client certificate",
                body=body, returns=returns, errors=(400, 401, 403, 413, 429, 503),
                description="HTTPS only: the device is the one its client certificate names (an X509_CERTIFICATE "
                            "credential, or a device CA's certificate, which registers the device by the CA's "
                            "template on its first request). 401 without a certificate, 403 when it is refused.")
      for method, feature, summary, body, returns in (
          ("POST", "telemetry", "Send telemetry", "TelemetryPayload", None),
          ("POST", "attributes", "Report client attributes", "AttributeValues", None),
          ("GET", "attributes", "Request client and shared attributes", None, "DeviceAttributes"))),
    *(Operation(method, path, DEVICE_API, summary, **details)
      for method, path, summary, details in openapi_downlink.OPERATIONS),
    Operation("GET", "/metrics", OPERATIONS, "Prometheus metrics", returns="Metrics", media="text/plain"),
    Operation("GET", "/healthz", OPERATIONS, "Liveness", returns="Health"),
    Operation("GET", "/readyz", OPERATIONS, "Readiness", returns="Readiness",
              description="200 when the database answers, the ingest queue has room and the listeners accept; "
                          "503 otherwise, with the same body naming the failed check."),
    Operation("GET", "/openapi.json", OPERATIONS, "This document", returns="OpenApi"),
)


def _s(kind: str | list[str], description: str = "", **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind, **more}
    if description:
        schema["description"] = description
    return schema


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema with no properties but its own: how update bodies refuse unknown fields."""
    return {**schema, "additionalProperties": False}


_NULLABLE_STRING = _s(["string", "null"])
_STRATEGY = _s("string", enum=["ALLOW_CREATE_NEW_DEVICES", "CHECK_PRE_PROVISIONED_DEVICES", "DISABLED"])
_CREDENTIALS_TYPE = _s("string", enum=["ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE"])
_TIME = _s("string", "UTC, yyyyMMdd'T'HHmmss'Z'", examples=["20240131T080000Z"])
_LAST_TIME = _s(["string", "null"], "UTC, yyyyMMdd'T'HHmmss'Z'; null: never", examples=["20240131T080000Z"])
_STATUS = _s("string", enum=["ONLINE", "OFFLINE"])
_VALUE = {"description": "A boolean, number, string or JSON value"}
_PRODUCT_FIELDS = {
    "name": _s("string", maxLength=128),
    "description": _s("string", maxLength=1024),
    "provision_strategy": _STRATEGY,
    # null on a product that does not provision (DISABLED, none set).
    "provision_key": _s(["string", "null"], "Required unless the strategy is DISABLED; unique across projects"),
    "provision_secret": _s(["string", "null"]),
    "send_ack_on_validation_error": _s("boolean"),
    "allow_claiming": _s("boolean", "Whether its devices may be claimed", default=True),
}
_DEVICE_FIELDS = {
    "device_name": _s("string", "Unique in the project", maxLength=256),
    "description": _s("string", maxLength=2048),
    "gateway": _s("boolean"),
    "auth_info": _ref("AuthInfo"),
}
_SCOPES = ["CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE"]


def _page_list(name: str, item: str) -> dict[str, Any]:
    return _object(name, "page", **{name: _s("array", items=_ref(item)), "page": _ref("Page")})


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        "error_code", "error_msg",
        error_code=_s("string", pattern=r"^IOTDA\.\d{6}$", examples=["IOTDA.000006"]),
        error_msg=_s("string"),
    ),
    "Page": _object("count", "marker", count=_s("integer", "Records matching, on every page"),
                    marker=_s(["string", "null"], "The last id of this page: pass it on to get the next")),
    "Product": _object(
        *_PRODUCT_FIELDS, "product_id", "create_time", product_id=_s("string"), **_PRODUCT_FIELDS,
        create_time=_TIME,
    ),
    "ProductCreate": _object("name", **_PRODUCT_FIELDS),
    "ProductUpdate": _closed(_object(**_PRODUCT_FIELDS)),
    "ProductList": _page_list("products", "Product"),
    "AuthInfo": _object(
        credentials_type=_CREDENTIALS_TYPE | {"default": "ACCESS_TOKEN"},
        access_token=_s("string", "ACCESS_TOKEN; generated when absent", maxLength=256),
        client_id=_s("string", "MQTT_BASIC"),
        user_name=_s("string", "MQTT_BASIC"),
        password=_s("string", "MQTT_BASIC, with a user name"),
        certificate=_s("string", "X509_CERTIFICATE: PEM, or its Base64 body"),
        auth_type=_s("string", "IoTDA's AddDevice (instead of credentials_type): SECRET or CERTIFICATES",
                     enum=["SECRET", "CERTIFICATES"]),
        secret=_s("string", "SECRET: 8 to 32 letters, digits, _ or -; generated when absent"),
        fingerprint=_s("string", "CERTIFICATES: the device certificate's SHA-256, 64 hex digits"),
        secure_access=_s("boolean", "SECRET: the device may connect over TLS only (MQTTS); true when absent, "
                         "as on IoTDA"),
    ),
    "DeviceAuthInfo": _object(
        "credentials_type", "client_id", "user_name",
        credentials_type=_s("string", enum=[*_CREDENTIALS_TYPE["enum"], "SECRET"]), client_id=_NULLABLE_STRING,
        user_name=_NULLABLE_STRING,
        auth_type=_s("string", "IoTDA's kind, for a secret device or a certificate bound by fingerprint",
                     enum=["SECRET", "CERTIFICATES"]),
        fingerprint=_s("string", "The bound certificate's SHA-256"),
        secure_access=_s("boolean", "A secret device: over TLS only"),
        secret=_s("string", "Only in the answer to the request that set it"),
        access_token=_s("string", "Only in the answer to the request that set it"),
        password=_s(["string", "null"], "Only in the answer to the request that set it"),
    ),
    "Device": _object(
        "device_id", "device_name", "product_id", "description", "gateway", "node_type", "gateway_id", "customer",
        "create_time", "provisioned", "status", "last_online_time", "last_offline_time", "last_activity_time",
        "auth_info",
        device_id=_s("string"), product_id=_s("string"),
        node_type=_s("string", "GATEWAY for a gateway device, else ENDPOINT", enum=["GATEWAY", "ENDPOINT"]),
        gateway_id=_NULLABLE_STRING | {"description": "A sub-device's gateway: the last one to connect it"},
        customer=_NULLABLE_STRING | {"description": "Who claimed the device (ThingsBoard's claiming); null: unclaimed"},
        node_id=_NULLABLE_STRING | {"description": "IoTDA's node id, unique within the product (AddDevice's, or "
                                    "the one a provisioning template rendered); null: none"},
        **{**_DEVICE_FIELDS, "auth_info": {"oneOf": [_ref("DeviceAuthInfo"), {"type": "null"}]}},
        create_time=_TIME,
        provisioned=_s("boolean", "True once the device has claimed its credentials by provisioning"),
        status=_STATUS | {"description": "ONLINE while connected (MQTT, a CoAP observation, a sub-device behind "
                          "its connected gateway), or within device_inactivity_timeout_seconds of a request"},
        last_online_time=_LAST_TIME, last_offline_time=_LAST_TIME,
        last_activity_time=_LAST_TIME | {"description": "The last message or request, to within a tenth of "
                                         "device_inactivity_timeout_seconds; null: never"},
    ),
    "DeviceCreate": _object("device_name", "product_id", product_id=_s("string", "A product of this project"),
                            node_id=_s("string", "IoTDA: the device's node id; its id is then {product_id}_{node_id}"),
                            device_id=_s("string", "IoTDA: the device id chosen", pattern="^[A-Za-z0-9_-]{1,128}$"),
                            **_DEVICE_FIELDS),
    "DeviceUpdate": _closed(_object(**_DEVICE_FIELDS)),
    "DeviceList": _page_list("devices", "Device"),
    "AttributeValues": _s("object", "A flat object: key to value", additionalProperties=_VALUE),
    "AttributeList": _object("attributes", attributes=_s("array", items=_object(
        "key", "value", "last_update_ts", key=_s("string"), value=_VALUE, last_update_ts=_s("integer")))),
    "LatestTelemetryList": _object("telemetry", telemetry=_s("array", items=_object(
        "key", "ts", "value", key=_s("string"), ts=_s("integer"), value=_VALUE))),
    "TelemetrySeries": _object("key", "values", key=_s("string"), values=_s("array", items=_object(
        "ts", "value", ts=_s("integer", "Unix milliseconds"), value=_VALUE))),
    "ProvisionRequest": _object(
        "provisionDeviceKey", "provisionDeviceSecret",
        deviceName=_s("string"), provisionDeviceKey=_s("string"), provisionDeviceSecret=_s("string"),
        credentialsType=_CREDENTIALS_TYPE, token=_s("string"), clientId=_s("string"), username=_s("string"),
        password=_s("string"), hash=_s("string", "X509_CERTIFICATE: the PEM certificate"),
        gateway=_s("boolean"),
    ),
    "ProvisionResponse": _object(
        "status",
        status=_s("string", enum=["SUCCESS", "NOT_FOUND", "FAILURE"]),
        credentialsType=_CREDENTIALS_TYPE,
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
    "Health": _object("status", status=_s("string", enum=["ok"])),
    "Readiness": _object(
        "status", "checks", status=_s("string", enum=["ready", "not ready"]),
        checks=_s("object", "Each check (database, ingest_queue, listeners): \"ok\" or why not",
                  additionalProperties=_s("string")),
    ),
    "OpenApi": _s("object", "An OpenAPI 3.1 document"),
    "Metrics": _s("string", "Prometheus' text exposition format"),
}


def _query(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": _s("string")}


_KEYS = "Comma-separated keys"
PARAMETERS: dict[str, Any] = {
    "project_id": _path("project_id", "The project; the X-Auth-Token must belong to it"),
    "product_id": _path("product_id", "A product of the project"),
    "device_id": _path("device_id", "A device of the project"),
    "key": _path("key", "A telemetry key"),
    "token": _path("token", "The device's access token"),
    "limit": _query("limit", _s("integer", minimum=1, maximum=50, default=10), "Page size (else IOTDA.000017)"),
    "marker": _query("marker", _s("string", pattern="^[0-9a-f]{24}$", default=NO_MARKER),
                     "Records with ids below this one: page.marker of the previous page"),
    "offset": _query("offset", _s("integer", minimum=0, maximum=500, default=0),
                     "Records to skip after the marker (else IOTDA.000018)"),
    "product_id_filter": _query("product_id", _s("string"), "Only this product's devices"),
    "device_name": _query("device_name", _s("string"), "Only the device with this name"),
    "status": _query("status", _STATUS, "Only the devices ONLINE, or OFFLINE, now"),
    "gateway_id": _query("gateway_id", _s("string"), "Only the sub-devices of this gateway device"),
    "customer": _query("customer", _s("string"), "Only the devices claimed by this customer"),
    "scope": _query("scope", _s("string", enum=_SCOPES), "The attribute scope", required=True),
    "writable_scope": _query("scope", _s("string", enum=_SCOPES[1:]),
                             "SHARED_SCOPE or SERVER_SCOPE; client attributes are the device's", required=True),
    "keys": _query("keys", _s("string"), _KEYS + "; all when absent"),
    "required_keys": _query("keys", _s("string"), _KEYS, required=True),
    "start_time": _query("start_time", _s("integer", minimum=0, default=0),
                         "Unix milliseconds, inclusive (else IOTDA.000009)"),
    "end_time": _query("end_time", _s("integer", minimum=0), "Unix milliseconds, inclusive; no bound when absent"
                       " (else IOTDA.000009; before start_time IOTDA.000010)"),
    "series_limit": _query("limit", _s("integer", minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT),
                           "Most values returned (else IOTDA.000017)"),
    "order": _query("order", _s("string", enum=["ASC", "DESC"], default="DESC"), "By ts"),
    "clientKeys": _query("clientKeys", _s("string"), _KEYS + " of client attributes"),
    "sharedKeys": _query("sharedKeys", _s("string"), _KEYS + " of shared attributes"),
}


def _iotda_error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref("Error")}}}


_TEXT = {"text/plain": {"schema": _s("string")}}
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
_ERROR_RESPONSES = {
    MANAGEMENT: {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
                 413: "PayloadTooLarge", 503: "Unavailable", 504: "GatewayTimeout"},
    LIVE_FEED: {400: "BadRequest"},
    DEVICE_API: {400: "DeviceBadRequest", 401: "DeviceUnauthorized", 403: "DeviceForbidden", 404: "DeviceNotFound",
                 413: "DevicePayloadTooLarge", 408: "DeviceRequestTimeout", 429: "DeviceTooManyRequests",
                 503: "DeviceUnavailable"},
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
            "schemas": {**SCHEMAS, **openapi_provisioning.SCHEMAS, **openapi_downlink.SCHEMAS,
                        **openapi_claiming.SCHEMAS, **openapi_commands.SCHEMAS, **openapi_ota.SCHEMAS,
                        **openapi_iotda.SCHEMAS, **openapi_queries.SCHEMAS, **openapi_forwarding.SCHEMAS},
            "parameters": {**PARAMETERS, **openapi_provisioning.PARAMETERS, **openapi_downlink.PARAMETERS,
                           **openapi_commands.PARAMETERS, **openapi_ota.PARAMETERS,
                           **openapi_iotda.PARAMETERS, **openapi_queries.PARAMETERS,
                           **openapi_forwarding.PARAMETERS},
            "responses": RESPONSES,
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
