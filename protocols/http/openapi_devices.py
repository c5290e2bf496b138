"""The OpenAPI entries of the management API's products and devices, with their attributes and
telemetry (protocols.http.openapi merges them into /openapi.json)."""

from __future__ import annotations

from typing import Any

from fleetgate.core.telemetry_queries import DEFAULT_LIMIT, MAX_LIMIT
from fleetgate.protocols.http.schema import closed as _closed
from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import path as _path
from fleetgate.protocols.http.schema import query as _query
from fleetgate.protocols.http.schema import ref as _ref
from fleetgate.protocols.http.schema import typed as _s

# (method, path, summary, details for protocols.http.openapi._management)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", "/products", "Create a product (device profile) with its provisioning settings",
     {"body": "ProductCreate", "status": 201, "returns": "Product", "errors": (409,)}),
    ("GET", "/products", "List products, newest first",
     {"query": ("limit", "marker", "offset"), "returns": "ProductList"}),
    ("GET", "/products/{product_id}", "Show a product", {"returns": "Product"}),
    ("PUT", "/products/{product_id}", "Change a product's fields",
     {"body": "ProductUpdate", "returns": "Product", "errors": (409,)}),
    ("DELETE", "/products/{product_id}", "Delete a product that has no devices", {"status": 204, "errors": (409,)}),
    ("POST", "/devices", "Register a device with its credentials",
     {"body": "DeviceCreate", "status": 201, "returns": "Device", "errors": (404, 409),
      "description": "Without auth_info, or with an ACCESS_TOKEN one naming no access_token, the gateway "
                     "generates a token. The answer shows the clear access_token or password once. For a "
                     "product with the CHECK_PRE_PROVISIONED_DEVICES strategy the device is pre-provisioned: "
                     "its first provisioning request is answered with exactly these credentials."}),
    ("GET", "/devices", "List devices, newest first",
     {"query": ("limit", "marker", "offset", "product_id_filter", "device_name", "status", "gateway_id",
                "customer"),
      "returns": "DeviceList"}),
    ("GET", "/devices/{device_id}", "Show a device", {"returns": "Device"}),
    ("PUT", "/devices/{device_id}", "Change a device; auth_info replaces its credentials",
     {"body": "DeviceUpdate", "returns": "Device", "errors": (409,)}),
    ("DELETE", "/devices/{device_id}", "Delete a device with its credentials, attributes and telemetry",
     {"status": 204}),
    ("GET", "/devices/{device_id}/attributes", "Read one scope's attributes",
     {"query": ("scope", "keys"), "returns": "AttributeList"}),
    ("POST", "/devices/{device_id}/attributes", "Set shared or server attributes",
     {"query": ("writable_scope",), "body": "AttributeValues",
      "description": "Values are typed as devices' attributes are: booleans, integers, doubles, strings "
                     "(numeric strings become numbers) and JSON; null values are skipped."}),
    ("DELETE", "/devices/{device_id}/attributes", "Delete shared or server attributes",
     {"query": ("writable_scope", "required_keys"), "status": 204}),
    ("GET", "/devices/{device_id}/telemetry/latest", "Each key's latest value",
     {"query": ("keys",), "returns": "LatestTelemetryList"}),
    ("GET", "/devices/{device_id}/telemetry/{key}", "A key's values over a time range",
     {"query": ("start_time", "end_time", "series_limit", "order"), "returns": "TelemetrySeries",
      "description": "Values with start_time <= ts <= end_time, at most limit of them, by ts in the order "
                     "asked. A key named 'latest' cannot be asked for here."}),
)

_NULLABLE_STRING = _s(["string", "null"])
_STRATEGY = _s("string", enum=["ALLOW_CREATE_NEW_DEVICES", "CHECK_PRE_PROVISIONED_DEVICES", "DISABLED"])
CREDENTIALS_TYPE = _s("string", enum=["ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE"])
_TIME = _s("string", "UTC, yyyyMMdd'T'HHmmss'Z'", examples=["20240131T080000Z"])
_LAST_TIME = _s(["string", "null"], "UTC, yyyyMMdd'T'HHmmss'Z'; null: never", examples=["20240131T080000Z"])
_STATUS = _s("string", enum=["ONLINE", "OFFLINE"])
VALUE = {"description": "A boolean, number, string or JSON value"}
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
    "Product": _object(
        *_PRODUCT_FIELDS, "product_id", "create_time", product_id=_s("string"), **_PRODUCT_FIELDS,
        create_time=_TIME,
    ),
    "ProductCreate": _object("name", **_PRODUCT_FIELDS),
    "ProductUpdate": _closed(_object(**_PRODUCT_FIELDS)),
    "ProductList": _page_list("products", "Product"),
    "AuthInfo": _object(
        credentials_type=CREDENTIALS_TYPE | {"default": "ACCESS_TOKEN"},
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
        credentials_type=_s("string", enum=[*CREDENTIALS_TYPE["enum"], "SECRET"]), client_id=_NULLABLE_STRING,
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
    "AttributeList": _object("attributes", attributes=_s("array", items=_object(
        "key", "value", "last_update_ts", key=_s("string"), value=VALUE, last_update_ts=_s("integer")))),
    "LatestTelemetryList": _object("telemetry", telemetry=_s("array", items=_object(
        "key", "ts", "value", key=_s("string"), ts=_s("integer"), value=VALUE))),
    "TelemetrySeries": _object("key", "values", key=_s("string"), values=_s("array", items=_object(
        "ts", "value", ts=_s("integer", "Unix milliseconds"), value=VALUE))),
}


KEYS = "Comma-separated keys"
PARAMETERS: dict[str, Any] = {
    "product_id": _path("product_id", "A product of the project"),
    "device_id": _path("device_id", "A device of the project"),
    "key": _path("key", "A telemetry key"),
    "product_id_filter": _query("product_id", _s("string"), "Only this product's devices"),
    "device_name": _query("device_name", _s("string"), "Only the device with this name"),
    "status": _query("status", _STATUS, "Only the devices ONLINE, or OFFLINE, now"),
    "gateway_id": _query("gateway_id", _s("string"), "Only the sub-devices of this gateway device"),
    "customer": _query("customer", _s("string"), "Only the devices claimed by this customer"),
    "scope": _query("scope", _s("string", enum=_SCOPES), "The attribute scope", required=True),
    "writable_scope": _query("scope", _s("string", enum=_SCOPES[1:]),
                             "SHARED_SCOPE or SERVER_SCOPE; client attributes are the device's", required=True),
    "keys": _query("keys", _s("string"), KEYS + "; all when absent"),
    "required_keys": _query("keys", _s("string"), KEYS, required=True),
    "start_time": _query("start_time", _s("integer", minimum=0, default=0),
                         "Unix milliseconds, inclusive (else IOTDA.000009)"),
    "end_time": _query("end_time", _s("integer", minimum=0), "Unix milliseconds, inclusive; no bound when absent"
                       " (else IOTDA.000009; before start_time IOTDA.000010)"),
    "series_limit": _query("limit", _s("integer", minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT),
                           "Most values returned (else IOTDA.000017)"),
    "order": _query("order", _s("string", enum=["ASC", "DESC"], default="DESC"), "By ts"),
}
