"""IoTDA's operator calls to a device: CreateCommand (synchronous), UpdateProperties and
ListProperties (properties set and get), CreateMessage (asynchronous, with a status to read back),
and the shadow's desired properties. Messages down are fleetgate.core.iotda_messages's.

A command is one downlink call whatever the device's dialect (fleetgate.core.iotda_downlink):
its request id is the command id the answer names.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fleetgate.core import iotda_downlink as kinds
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.devices import require_device
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import DeviceNotConnected, InvalidInput, RpcTimeout
from fleetgate.core.iotda_messages import IotdaMessages
from fleetgate.core.iotda_ports import DeviceMessage, Direction, IotdaStore
from fleetgate.core.iotda_uplink import IotdaUplink
from fleetgate.core.ports import DeviceLookup

DEFAULT_TIMEOUT = 20.0  # IoTDA waits this long for a device's answer
_IDS = 2**31 - 1
MAX_LISTED = 100


class CommandTimeout(RpcTimeout):
    """The device did not answer the command in time (IoTDA's IOTDA.014111)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: str
    response: Any


class IotdaCommands:
    def __init__(
        self, devices: DeviceLookup, downlink: Downlink, store: IotdaStore, uplink: IotdaUplink, *,
        timeout: float = DEFAULT_TIMEOUT, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._devices = devices
        self._downlink = downlink
        self._store = store
        self._uplink = uplink
        self._timeout = timeout
        self._clock = clock
        self.messages_down = IotdaMessages(devices, downlink, store, timeout=timeout, clock=clock)

    async def command(
        self, project_id: str, device_id: str, service_id: str | None, command_name: str, paras: Any,
    ) -> CommandResult:
        """The device's answer (``{"result_code", "response_name", "paras"}``); DeviceNotConnected
        when it is offline, CommandTimeout when it does not answer in time."""
        if not command_name:
            raise InvalidInput("command_name is required")
        body = {"service_id": service_id, "command_name": command_name, "paras": paras}
        request_id, response = await self._call(project_id, device_id, kinds.COMMAND, body, command_name, paras)
        return CommandResult(str(request_id), response)

    async def set_properties(self, project_id: str, device_id: str, services: Any) -> CommandResult:
        """UpdateProperties: the device's ``{"result_code", "result_desc"}``."""
        if not isinstance(services, list) or not services or not all(
                isinstance(s, dict) and isinstance(s.get("service_id"), str) for s in services):
            raise InvalidInput('services must be a list of {"service_id", "properties"}')
        return CommandResult(*map_id(await self._call(project_id, device_id, kinds.PROPERTIES_SET,
                                                      {"services": services})))

    async def get_properties(self, project_id: str, device_id: str, service_id: str | None) -> CommandResult:
        """ListProperties: the device's ``{"services": [...]}``."""
        body = {"service_id": service_id} if service_id else {}
        return CommandResult(*map_id(await self._call(project_id, device_id, kinds.PROPERTIES_GET, body)))

    async def _call(self, project_id: str, device_id: str, kind: str, body: dict[str, Any],
                    method: str | None = None, params: Any = None) -> tuple[int, Any]:
        await require_device(self._devices, project_id, device_id)
        request_id = secrets.randbelow(_IDS) + 1
        body = {"object_device_id": device_id, **body}
        try:
            response = await self._downlink.call(
                device_id, method or kind, params, timeout=self._timeout, oneway=False,
                iotda={"k": kind, "b": body}, request_id=request_id)
        except DeviceNotConnected:
            raise DeviceNotConnected(f"The device {device_id} is not online") from None
        except RpcTimeout:
            raise CommandTimeout(f"The device {device_id} did not answer within {self._timeout:g} s") from None
        return request_id, response

    # messages down: fleetgate.core.iotda_messages

    async def create_message(
        self, project_id: str, device_id: str, message: Any, *, message_id: str | None = None,
        name: str | None = None, ttl: Any = None,
    ) -> DeviceMessage:
        return await self.messages_down.create(project_id, device_id, message, message_id=message_id, name=name,
                                               ttl=ttl)

    async def message(self, project_id: str, device_id: str, message_id: str) -> DeviceMessage:
        return await self.messages_down.message(project_id, device_id, message_id)

    async def messages(self, project_id: str, device_id: str, direction: Direction,
                       limit: int = MAX_LISTED) -> list[DeviceMessage]:
        return await self.messages_down.messages(project_id, device_id, direction, limit)

    # the shadow

    async def shadow(self, project_id: str, device_id: str) -> list[dict[str, Any]]:
        await require_device(self._devices, project_id, device_id)
        return await self._uplink.shadow(device_id)

    async def update_desired(self, project_id: str, device_id: str, shadow: list[Any]) -> list[dict[str, Any]]:
        """UpdateDeviceShadowDesiredData: ``[{"service_id", "desired": {...}, "version"?}]``."""
        await require_device(self._devices, project_id, device_id)
        for entry in shadow:
            if not isinstance(entry, dict) or not isinstance(entry.get("service_id"), str) \
                    or not isinstance(entry.get("desired"), dict):
                raise InvalidInput('shadow must be a list of {"service_id", "desired": {...}, "version"}')
            version = entry.get("version")
            if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
                raise InvalidInput("version must be an integer")
        now = self._clock.now_ms()
        for entry in shadow:
            await self._store.set_desired(device_id, entry["service_id"], entry["desired"], now, entry.get("version"))
        return await self._uplink.shadow(device_id)

    async def close(self) -> None:
        await self.messages_down.close()


def map_id(answer: tuple[int, Any]) -> tuple[str, Any]:
    return str(answer[0]), answer[1]
