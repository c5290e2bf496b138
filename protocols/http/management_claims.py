"""ThingsBoard's device claiming, completed by an operator: /v5/iot/{project_id}/devices/claim.

The device asked to be claimed with a secret key (fleetgate.core.claiming); the operator
names the device and the secret, and the customer the device then belongs to. A claimed
device is released by DELETE /devices/{device_id}/claim.
"""

from __future__ import annotations

from aiohttp import web

from fleetgate.core.claiming import DEFAULT_SECRET_KEY, Claiming
from fleetgate.core.devices import DeviceManagement
from fleetgate.protocols.http.iotda import ScopedRoute, body_field, json_body, json_response
from fleetgate.protocols.http.management_devices import device_json


class ClaimRoutes:
    def __init__(self, claiming: Claiming, devices: DeviceManagement) -> None:
        self._claiming = claiming
        self._devices = devices

    def routes(self) -> list[ScopedRoute]:
        return [
            ("POST", "/devices/claim", self.claim_device),
            ("DELETE", "/devices/{device_id}/claim", self.release_device),
        ]

    async def claim_device(self, request: web.Request, project_id: str) -> web.Response:
        """``{"device_name", "secret_key", "customer"}``: the claimed device, its customer set."""
        body = await json_body(request)
        secret = body_field(body, "secret_key", str)
        device_id = await self._claiming.complete(
            project_id,
            body_field(body, "device_name", str, required=True),
            DEFAULT_SECRET_KEY if secret is None else secret,
            body_field(body, "customer", str, required=True),
        )
        return json_response(device_json(await self._devices.get(project_id, device_id)))

    async def release_device(self, request: web.Request, project_id: str) -> web.Response:
        await self._claiming.release(project_id, request.match_info["device_id"])
        return web.Response(status=204)
