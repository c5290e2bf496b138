"""Server-side RPC as operators make it: a call to one of the project's devices."""

from __future__ import annotations

from typing import Any

from fleetgate.core.devices import require_device
from fleetgate.core.downlink import Downlink
from fleetgate.core.ports import DeviceLookup


class CommandService:
    def __init__(self, devices: DeviceLookup, downlink: Downlink) -> None:
        self._devices = devices
        self._downlink = downlink

    async def call(
        self, project_id: str, device_id: str, method: str, params: Any, *, timeout: float, oneway: bool
    ) -> Any:
        """The device's reply to a two-way call (None for a one-way one)."""
        await require_device(self._devices, project_id, device_id)
        return await self._downlink.call(device_id, method, params, timeout=timeout, oneway=oneway)
