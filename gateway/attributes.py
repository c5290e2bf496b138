"""Attributes as operators see them: every scope readable, shared and server scopes writable.

Client attributes belong to the device (it reports them), so operators only read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetgate.core import codec
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.devices import require_device
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import InvalidInput
from fleetgate.core.ports import AttributeStore, DeviceLookup
from fleetgate.core.telemetry_model import AttributeScope, AttributeValue, KeyValue

_SCOPES = tuple(s.value for s in AttributeScope)


def scope_of(raw: str | None) -> AttributeScope:
    if raw in _SCOPES:
        return AttributeScope(raw)
    raise InvalidInput(f"scope must be one of {', '.join(_SCOPES)}")


class AttributeService:
    def __init__(
        self, devices: DeviceLookup, store: AttributeStore, limits: PayloadLimits, downlink: Downlink, *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._devices = devices
        self._clock = clock
        self._store = store
        self._limits = limits
        self._downlink = downlink

    async def read(
        self, project_id: str, device_id: str, scope: AttributeScope, keys: Sequence[str] | None
    ) -> list[AttributeValue]:
        """The scope's attributes, or only the named keys that exist."""
        await require_device(self._devices, project_id, device_id)
        return await self._store.read_attributes(device_id, scope, keys)

    async def write(self, project_id: str, device_id: str, scope: AttributeScope, payload: Any) -> None:
        """Set attributes from a flat JSON object, typed as devices' attributes are typed."""
        _writable(scope)
        values = codec.attributes_from_json(payload, self._limits)
        await require_device(self._devices, project_id, device_id)
        if values:
            await self._store.write_attributes(device_id, scope, self._clock.now_ms(), values)
            await self._changed(device_id, scope, values, ())

    async def delete(self, project_id: str, device_id: str, scope: AttributeScope, keys: Sequence[str]) -> None:
        _writable(scope)
        if not keys:
            raise InvalidInput("keys is required: the comma-separated attribute keys to delete")
        await require_device(self._devices, project_id, device_id)
        deleted = await self._store.delete_attributes(device_id, scope, keys)
        if deleted:
            await self._changed(device_id, scope, (), deleted)

    async def _changed(
        self, device_id: str, scope: AttributeScope, updated: Sequence[KeyValue], deleted: Sequence[str]
    ) -> None:
        """The one place an operator's attribute change leaves the core, after it is stored:
        connected devices hear of shared attributes (ThingsBoard's attribute update push)."""
        if scope is AttributeScope.SHARED:
            await self._downlink.attributes_changed(device_id, updated, deleted)


def _writable(scope: AttributeScope) -> None:
    if scope is AttributeScope.CLIENT:
        raise InvalidInput("CLIENT_SCOPE attributes are reported by the device and are read-only here")
