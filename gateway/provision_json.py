"""ThingsBoard's provisioning request and response JSON, identical on every protocol (spec 1.1, 1.2)."""

from __future__ import annotations

from typing import Any

import orjson

from fleetgate.core.errors import InvalidProvisionRequest, MalformedPayload
from fleetgate.core.model import CredentialsType, MqttBasic
from fleetgate.core.provisioning import FAILURE_MSG, NOT_FOUND_MSG
from fleetgate.core.provisioning_model import ProvisionRequest, ProvisionResult, ProvisionStatus


def request_from_json(root: Any, source: str = "") -> ProvisionRequest:
    if not isinstance(root, dict):
        raise MalformedPayload("The provisioning request must be a JSON object")
    for required in ("provisionDeviceKey", "provisionDeviceSecret"):
        if root.get(required) is None:
            raise InvalidProvisionRequest(f"Failed to find the field {required} in JSON body!")
    kind = _string(root, "credentialsType") or CredentialsType.ACCESS_TOKEN.value
    try:
        credentials_type = CredentialsType(kind)
    except ValueError:
        raise InvalidProvisionRequest(f"No enum constant CredentialsType.{kind}") from None
    gateway = root.get("gateway")
    return ProvisionRequest(
        provision_key=_string(root, "provisionDeviceKey") or "",
        provision_secret=_string(root, "provisionDeviceSecret") or "",
        device_name=_string(root, "deviceName"),
        credentials_type=credentials_type,
        token=_string(root, "token"),
        client_id=_string(root, "clientId"),
        username=_string(root, "username"),
        password=_string(root, "password"),
        certificate=_string(root, "hash"),
        gateway=gateway is True or (isinstance(gateway, str) and gateway.lower() == "true"),
        source=source,
    )


def _string(root: dict[str, Any], key: str) -> str | None:
    """ThingsBoard reads every field with getAsString(): numbers become strings."""
    value = root.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise InvalidProvisionRequest(f"The field {key} must be a string")


def response_to_json(result: ProvisionResult) -> bytes:
    """The response bytes, keys in ThingsBoard's (Gson insertion) order."""
    if result.status is ProvisionStatus.NOT_FOUND:
        return orjson.dumps({"errorMsg": NOT_FOUND_MSG, "status": "NOT_FOUND"})
    if result.status is ProvisionStatus.FAILURE or result.credentials is None:
        return orjson.dumps({"errorMsg": FAILURE_MSG, "status": "FAILURE"})
    value = result.credentials.value
    body: dict[str, Any] = {}
    if isinstance(value, MqttBasic):
        body["credentialsValue"] = {"clientId": value.client_id, "userName": value.user_name, "password": value.password}
    else:
        body["credentialsValue"] = value
    body["credentialsType"] = result.credentials.type.value
    body["status"] = "SUCCESS"
    return orjson.dumps(body)
