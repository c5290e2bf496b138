"""IoTDA's device calls under /v5/iot/{project_id}/devices/{device_id}, in its paths and JSON:
ResetDeviceSecret, CreateMessage and the message log, UpdateProperties and ListProperties,
ShowDeviceShadow and UpdateDeviceShadowDesiredData. CreateCommand shares the commands route
(protocols/http/management_commands.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleetgate.core.errors import InvalidInput
from fleetgate.core.iotda_commands import IotdaCommands
from fleetgate.core.iotda_devices import IotdaDevices
from fleetgate.core.iotda_ports import DeviceMessage, Direction
from fleetgate.protocols.http.iotda import ScopedRoute, body_field, iotda_time, json_body, json_response


class IotdaRoutes:
    def __init__(self, devices: IotdaDevices, commands: IotdaCommands) -> None:
        self._devices = devices
        self._commands = commands

    def routes(self) -> list[ScopedRoute]:
        return [
            ("POST", "/devices/{device_id}/action", self.action),
            ("POST", "/devices/{device_id}/messages", self.create_message),
            ("GET", "/devices/{device_id}/messages", self.list_messages),
            ("GET", "/devices/{device_id}/messages/{message_id}", self.show_message),
            ("PUT", "/devices/{device_id}/properties", self.update_properties),
            ("GET", "/devices/{device_id}/properties", self.list_properties),
            ("GET", "/devices/{device_id}/shadow", self.show_shadow),
            ("PUT", "/devices/{device_id}/shadow", self.update_shadow),
        ]

    async def action(self, request: web.Request, project_id: str) -> web.Response:
        """ResetDeviceSecret: ``?action_id=resetSecret`` with ``{"secret"}`` (generated when absent)."""
        if request.query.get("action_id") != "resetSecret":
            raise InvalidInput("action_id must be resetSecret")
        body = await json_body(request) if request.body_exists else {}
        device_id = request.match_info["device_id"]
        secret = await self._devices.reset_secret(project_id, device_id, body_field(body, "secret", str),
                                                  force_disconnect=body_field(body, "force_disconnect", bool) or False)
        return json_response({"device_id": device_id, "secret": secret, "secret_type": "PRIMARY"})

    async def create_message(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        message = await self._commands.create_message(
            project_id, request.match_info["device_id"], body.get("message"),
            message_id=body_field(body, "message_id", str), name=body_field(body, "name", str), ttl=body.get("ttl"))
        return json_response({"message_id": message.id, "result": _result(message)}, status=201)

    async def list_messages(self, request: web.Request, project_id: str) -> web.Response:
        """Messages down (IoTDA's ListDeviceMessages); ``?direction=UP`` or ``EVENT`` for what the
        device sent."""
        raw = request.query.get("direction") or Direction.DOWN.value
        try:
            direction = Direction(raw.upper())
        except ValueError:
            raise InvalidInput("direction must be DOWN, UP or EVENT") from None
        device_id = request.match_info["device_id"]
        messages = await self._commands.messages(project_id, device_id, direction)
        return json_response({"device_id": device_id, "messages": [message_json(m) for m in messages]})

    async def show_message(self, request: web.Request, project_id: str) -> web.Response:
        message = await self._commands.message(
            project_id, request.match_info["device_id"], request.match_info["message_id"])
        return json_response(message_json(message))

    async def update_properties(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        result = await self._commands.set_properties(project_id, request.match_info["device_id"], body.get("services"))
        return json_response({"request_id": result.command_id, "response": result.response})

    async def list_properties(self, request: web.Request, project_id: str) -> web.Response:
        result = await self._commands.get_properties(
            project_id, request.match_info["device_id"], request.query.get("service_id") or None)
        return json_response({"request_id": result.command_id, "response": result.response})

    async def show_shadow(self, request: web.Request, project_id: str) -> web.Response:
        device_id = request.match_info["device_id"]
        return json_response({"device_id": device_id, "shadow": await self._commands.shadow(project_id, device_id)})

    async def update_shadow(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        shadow = body.get("shadow")
        if not isinstance(shadow, list) or not shadow:
            raise InvalidInput('shadow must be a list of {"service_id", "desired", "version"}')
        device_id = request.match_info["device_id"]
        shown = await self._commands.update_desired(project_id, device_id, shadow)
        return json_response({"device_id": device_id, "shadow": shown})


def _result(message: DeviceMessage) -> dict[str, Any]:
    return {"status": message.status.value, "created_time": iotda_time(message.created_at),
            "finished_time": iotda_time(message.finished_at) if message.finished_at is not None else None}


def message_json(message: DeviceMessage) -> dict[str, Any]:
    return {
        "message_id": message.id,
        "name": message.name,
        "message": message.content,
        "direction": message.direction.value,
        "event": message.kind,
        "status": message.status.value,
        "error_info": message.error,
        "created_time": iotda_time(message.created_at),
        "finished_time": iotda_time(message.finished_at) if message.finished_at is not None else None,
    }
