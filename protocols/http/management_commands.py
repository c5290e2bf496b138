"""Server-side RPC under /v5/iot/{project_id}/devices/{device_id}/commands."""

from __future__ import annotations

from aiohttp import web

from fleetgate.core import errors
from fleetgate.core.commands import CommandService
from fleetgate.protocols.http.iotda import ScopedRoute, body_field, json_body, json_response

DEFAULT_TIMEOUT_MS = 10_000


class CommandRoutes:
    def __init__(self, commands: CommandService) -> None:
        self._commands = commands

    def routes(self) -> list[ScopedRoute]:
        return [("POST", "/devices/{device_id}/commands", self.call)]

    async def call(self, request: web.Request, project_id: str) -> web.Response:
        """ThingsBoard's RPC: {"method", "params", "timeout" (ms), "oneway"}; a two-way call
        answers with the device's reply, a one-way call with 202 once it is sent."""
        body = await json_body(request)
        timeout_ms = body.get("timeout", DEFAULT_TIMEOUT_MS)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int):
            raise errors.InvalidInput("timeout must be an integer number of milliseconds")
        oneway = body_field(body, "oneway", bool) or False
        reply = await self._commands.call(
            project_id, request.match_info["device_id"], body_field(body, "method", str, required=True),
            body.get("params"), timeout=timeout_ms / 1000, oneway=oneway,
        )
        if oneway:
            return json_response({}, status=202)
        return json_response({"response": reply})
