"""Server-side RPC under /v5/iot/{project_id}/devices/{device_id}/commands.

A call is lightweight (answered with the device's reply, 409 when the device is not connected)
or, with ``"persistent": true``, kept until the device listens (fleetgate.core.persistent_rpc):
answered 202 with its id at once, then listed, shown and deleted here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleetgate.core import errors
from fleetgate.core.commands import CommandService
from fleetgate.core.iotda_commands import IotdaCommands
from fleetgate.core.rpc_calls import PersistentCall
from fleetgate.protocols.http.iotda import (
    ScopedRoute, body_field, iotda_time, json_body, json_response, page_json, page_params,
)

DEFAULT_TIMEOUT_MS = 10_000


class CommandRoutes:
    def __init__(self, commands: CommandService, iotda: IotdaCommands | None = None) -> None:
        self._commands = commands
        self._iotda = iotda

    def routes(self) -> list[ScopedRoute]:
        return [
            ("POST", "/devices/{device_id}/commands", self.call),
            ("GET", "/devices/{device_id}/commands", self.list_calls),
            ("GET", "/devices/{device_id}/commands/{command_id}", self.show_call),
            ("DELETE", "/devices/{device_id}/commands/{command_id}", self.delete_call),
        ]

    async def call(self, request: web.Request, project_id: str) -> web.Response:
        """ThingsBoard's RPC: {"method", "params", "timeout" (ms), "oneway"}; a two-way call
        answers with the device's reply, a one-way call with 202 once it is sent. With
        "persistent": true (and "expiration_time", Unix ms, and "retries"), 202 with the
        stored call at once. IoTDA's CreateCommand body (``service_id``, ``command_name``,
        ``paras``) is synchronous: 200 with the device's response."""
        body = await json_body(request)
        if self._iotda is not None and "command_name" in body and "method" not in body:
            result = await self._iotda.command(
                project_id, request.match_info["device_id"], body_field(body, "service_id", str),
                body_field(body, "command_name", str, required=True), body.get("paras"))
            return json_response({"command_id": result.command_id, "response": result.response})
        timeout_ms = _integer(body, "timeout", DEFAULT_TIMEOUT_MS, "an integer number of milliseconds")
        oneway = body_field(body, "oneway", bool) or False
        method = body_field(body, "method", str, required=True)
        device_id = request.match_info["device_id"]
        if body_field(body, "persistent", bool):
            stored = await self._commands.persistent.submit(
                project_id, device_id, method, body.get("params"), timeout=timeout_ms / 1000, oneway=oneway,
                expiration_time=_integer(body, "expiration_time", None, "an integer (Unix milliseconds)"),
                retries=_integer(body, "retries", None),
            )
            return json_response(command_json(stored), status=202)
        reply = await self._commands.call(
            project_id, device_id, method, body.get("params"), timeout=timeout_ms / 1000, oneway=oneway,
        )
        if oneway:
            return json_response({}, status=202)
        return json_response({"response": reply})

    async def list_calls(self, request: web.Request, project_id: str) -> web.Response:
        """The device's persistent calls, newest first, with their states."""
        limit, marker, offset = page_params(request)
        page = await self._commands.persistent.list(project_id, request.match_info["device_id"], limit, marker, offset)
        return json_response(page_json("commands", page, command_json))

    async def show_call(self, request: web.Request, project_id: str) -> web.Response:
        call = await self._commands.persistent.get(
            project_id, request.match_info["device_id"], request.match_info["command_id"])
        return json_response(command_json(call))

    async def delete_call(self, request: web.Request, project_id: str) -> web.Response:
        await self._commands.persistent.delete(
            project_id, request.match_info["device_id"], request.match_info["command_id"])
        return web.Response(status=204)


def command_json(call: PersistentCall) -> dict[str, Any]:
    return {
        "command_id": call.id,
        "device_id": call.device_id,
        "method": call.method,
        "params": call.params,
        "oneway": call.oneway,
        "persistent": True,
        "status": call.status.value,
        "response": call.response,
        "timeout": call.timeout_ms,
        "expiration_time": call.expiration_time,
        "retries": call.retries,
        "attempts": call.attempts,
        "create_time": iotda_time(call.created_at),
    }


def _integer(body: dict[str, Any], name: str, default: int | None, what: str = "an integer") -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidInput(f"{name} must be {what}")
    return value
