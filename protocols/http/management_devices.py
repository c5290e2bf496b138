"""Devices under /v5/iot/{project_id}/devices, in the shape of IoTDA's AddDevice and QueryDevice.

A device's IoTDA ``description`` is its ThingsBoard ``label``. Its ``status`` (ONLINE, OFFLINE)
and last online, offline and activity times are read as of the request (fleetgate.core.presence).

``auth_info`` carries ThingsBoard's credential kinds. A response shows the clear
access token or password only to the request that set it; afterwards only the
non-secret fields (type, client id, user name) are readable.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleetgate.core.devices import DeviceManagement, generated_token
from fleetgate.core.errors import InvalidInput
from fleetgate.core.iotda_devices import SECRET, IotdaDevices, NewDevice
from fleetgate.core.model import Credentials, CredentialsType, DeviceDetails, IotdaSecret, MqttBasic
from fleetgate.core.presence_model import DeviceStatus
from fleetgate.protocols.http.iotda import ScopedRoute, body_field, iotda_time, json_body, json_response, page_json, page_params

_SETTABLE_TYPES = (CredentialsType.ACCESS_TOKEN, CredentialsType.MQTT_BASIC, CredentialsType.X509_CERTIFICATE)
_UPDATABLE = frozenset({"device_name", "description", "gateway", "auth_info"})
# IoTDA's names for the kinds it knows (auth_info.auth_type).
_AUTH_TYPES = {CredentialsType.SECRET: "SECRET", CredentialsType.X509_CERTIFICATE: "CERTIFICATES"}


class DeviceRoutes:
    def __init__(self, devices: DeviceManagement, iotda: IotdaDevices | None = None) -> None:
        self._devices = devices
        self._iotda = iotda

    def routes(self) -> list[ScopedRoute]:
        return [
            ("POST", "/devices", self.create_device),
            ("GET", "/devices", self.list_devices),
            ("GET", "/devices/{device_id}", self.show_device),
            ("PUT", "/devices/{device_id}", self.update_device),
            ("DELETE", "/devices/{device_id}", self.delete_device),
        ]

    async def create_device(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        auth_info = body_field(body, "auth_info", dict)
        if self._iotda is not None and iotda_add_device(body, auth_info):
            added = await self._iotda.add(project_id, new_device(body, auth_info))
            return json_response(device_json(added.change.details, added.change.credentials), status=201)
        change = await self._devices.create(
            project_id,
            body_field(body, "device_name", str, required=True),
            body_field(body, "product_id", str, required=True),
            description=body_field(body, "description", str) or "",
            gateway=body_field(body, "gateway", bool) or False,
            credentials=credentials_of(auth_info) if auth_info is not None else None,
        )
        return json_response(device_json(change.details, change.credentials), status=201)

    async def list_devices(self, request: web.Request, project_id: str) -> web.Response:
        limit, marker, offset = page_params(request)
        query = request.query
        page = await self._devices.list(
            project_id, limit, marker, offset,
            product_id=query.get("product_id") or None, name=query.get("device_name") or None,
            status=_status(query.get("status") or None), gateway_id=query.get("gateway_id") or None,
            customer=query.get("customer") or None,
        )
        return json_response(page_json("devices", page, device_json))

    async def show_device(self, request: web.Request, project_id: str) -> web.Response:
        return json_response(device_json(await self._devices.get(project_id, request.match_info["device_id"])))

    async def update_device(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        unknown = body.keys() - _UPDATABLE
        if unknown:
            raise InvalidInput(f"Unknown or read-only fields: {', '.join(sorted(unknown))}")
        auth_info = body_field(body, "auth_info", dict)
        change = await self._devices.update(
            project_id,
            request.match_info["device_id"],
            name=body_field(body, "device_name", str),
            description=body_field(body, "description", str),
            gateway=body_field(body, "gateway", bool),
            credentials=credentials_of(auth_info) if auth_info is not None else None,
        )
        return json_response(device_json(change.details, change.credentials))

    async def delete_device(self, request: web.Request, project_id: str) -> web.Response:
        await self._devices.delete(project_id, request.match_info["device_id"])
        return web.Response(status=204)


def iotda_add_device(body: dict[str, Any], auth_info: dict[str, Any] | None) -> bool:
    """Whether the body is IoTDA's AddDevice (an auth_type, a node id or a chosen device id) rather
    than ThingsBoard's credential kinds."""
    return (auth_info is not None and "auth_type" in auth_info) or "node_id" in body or "device_id" in body


def new_device(body: dict[str, Any], auth_info: dict[str, Any] | None) -> NewDevice:
    info = auth_info or {}
    return NewDevice(
        product_id=body_field(body, "product_id", str, required=True),
        auth_type=body_field(info, "auth_type", str) or SECRET,
        node_id=body_field(body, "node_id", str),
        device_id=body_field(body, "device_id", str),
        device_name=body_field(body, "device_name", str),
        description=body_field(body, "description", str) or "",
        gateway=body_field(body, "gateway", bool) or False,
        secret=body_field(info, "secret", str),
        fingerprint=body_field(info, "fingerprint", str),
        secure_access=body_field(info, "secure_access", bool) is not False,
    )


def credentials_of(auth_info: dict[str, Any]) -> Credentials:
    """The credentials an ``auth_info`` object asks for; an access token when it names none."""
    kind = _credentials_type(body_field(auth_info, "credentials_type", str))
    match kind:
        case CredentialsType.MQTT_BASIC:
            # Empty strings count as absent, as in ThingsBoard's validator.
            return Credentials(kind, MqttBasic(
                body_field(auth_info, "client_id", str) or None,
                body_field(auth_info, "user_name", str) or None,
                body_field(auth_info, "password", str) or None,
            ))
        case CredentialsType.X509_CERTIFICATE:
            return Credentials(kind, body_field(auth_info, "certificate", str, required=True))
        case _:
            token = body_field(auth_info, "access_token", str)
            return generated_token() if token is None else Credentials(kind, token)


def _credentials_type(raw: str | None) -> CredentialsType:
    if raw is None:
        return CredentialsType.ACCESS_TOKEN
    if raw not in _SETTABLE_TYPES:
        raise InvalidInput(f"credentials_type must be one of {', '.join(_SETTABLE_TYPES)}")
    return CredentialsType(raw)


def _status(raw: str | None) -> DeviceStatus | None:
    if raw is None:
        return None
    try:
        return DeviceStatus(raw)
    except ValueError:
        raise InvalidInput(f"status must be one of {', '.join(DeviceStatus)}") from None


def device_json(details: DeviceDetails, clear: Credentials | None = None) -> dict[str, Any]:
    device, connectivity = details.device, details.connectivity
    return {
        "device_id": device.id,
        "device_name": device.name,
        "product_id": device.product_id,
        "description": device.label or "",
        "gateway": device.gateway,
        # IoTDA's names: a gateway's node type, and a sub-device's gateway.
        "node_type": "GATEWAY" if device.gateway else "ENDPOINT",
        "gateway_id": device.gateway_id,
        "customer": device.customer,  # who claimed it (ThingsBoard's claiming); None: unclaimed
        "node_id": device.node_id,
        "create_time": iotda_time(device.created_at),
        "provisioned": details.provisioned,
        "status": connectivity.status.value,
        "last_online_time": _time(connectivity.last_online_time),
        "last_offline_time": _time(connectivity.last_offline_time),
        "last_activity_time": _time(connectivity.last_activity_time),
        "auth_info": _auth_info_json(details, clear),
    }


def _time(ms: int | None) -> str | None:
    return None if ms is None else iotda_time(ms)


def _auth_info_json(details: DeviceDetails, clear: Credentials | None) -> dict[str, Any] | None:
    info = details.credentials
    if info is None:
        return None
    shown: dict[str, Any] = {"credentials_type": info.type.value, "client_id": info.client_id,
                             "user_name": info.user_name}
    # IoTDA's view, for the devices IoTDA knows: a secret, or a certificate bound by its fingerprint.
    if info.type is CredentialsType.SECRET or info.fingerprint is not None:
        shown["auth_type"] = _AUTH_TYPES[info.type]
    if info.fingerprint is not None:
        shown["fingerprint"] = info.fingerprint
    if info.secure_access is not None:
        shown["secure_access"] = info.secure_access
    if clear is not None:
        if isinstance(clear.value, IotdaSecret):
            shown["secret"] = clear.value.secret
        elif isinstance(clear.value, MqttBasic):
            shown["password"] = clear.value.password
        elif clear.type is CredentialsType.ACCESS_TOKEN:
            shown["access_token"] = clear.value
    return shown
