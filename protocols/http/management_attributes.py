"""A device's attributes under /v5/iot/{project_id}/devices/{device_id}/attributes, one scope per call."""

from __future__ import annotations

from aiohttp import web

from fleetgate.core.attributes import AttributeService, scope_of
from fleetgate.protocols.http.iotda import ScopedRoute, json_body, json_response, keys_param

_PATH = "/devices/{device_id}/attributes"


class AttributeRoutes:
    def __init__(self, attributes: AttributeService) -> None:
        self._attributes = attributes

    def routes(self) -> list[ScopedRoute]:
        return [("GET", _PATH, self.show), ("POST", _PATH, self.write), ("DELETE", _PATH, self.delete)]

    async def show(self, request: web.Request, project_id: str) -> web.Response:
        values = await self._attributes.read(
            project_id, request.match_info["device_id"], scope_of(request.query.get("scope")), keys_param(request)
        )
        return json_response(
            {"attributes": [{"key": v.key, "value": v.value, "last_update_ts": v.last_update_ts} for v in values]}
        )

    async def write(self, request: web.Request, project_id: str) -> web.Response:
        scope = scope_of(request.query.get("scope"))
        await self._attributes.write(project_id, request.match_info["device_id"], scope, await json_body(request))
        return web.Response()

    async def delete(self, request: web.Request, project_id: str) -> web.Response:
        await self._attributes.delete(
            project_id, request.match_info["device_id"], scope_of(request.query.get("scope")),
            keys_param(request) or [],
        )
        return web.Response(status=204)
