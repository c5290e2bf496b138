"""Server-side RPC as operators make it: a call to one of the project's devices."""

from __future__ import annotations

from typing import Any

from fleetgate.core.devices import require_device
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import InvalidInput
from fleetgate.core.persistent_rpc import PersistentRpc
from fleetgate.core.ports import DeviceLookup


class CommandService:
    def __init__(self, devices: DeviceLookup, downlink: Downlink, persistent: PersistentRpc | None = None) -> None:
        self._devices = devices
        self._downlink = downlink
        self._persistent = persistent

    async def call(
        self, project_id: str, device_id: str, method: str, params: Any, *, timeout: float, oneway: bool
    ) -> Any:
        """The device's reply to a two-way call (None for a one-way one)."""
        await require_device(self._devices, project_id, device_id)
        return await self._downlink.call(device_id, method, params, timeout=timeout, oneway=oneway)

    @property
    def persistent(self) -> PersistentRpc:
        """Calls kept until the device listens (fleetgate.core.persistent_rpc)."""
        if self._persistent is None:
            raise InvalidInput("This gateway does not keep persistent calls")
        return self._persistent
