"""Sub-devices behind gateway devices: who they are, and how the downlink reaches them.

A gateway names its sub-devices; each is found or created by name in the gateway's
project (never another's), and remembered here by gateway and name while the gateway
is connected, so a gateway's messages cost no lookup once its devices are known. A
sub-device reached through its gateway gets a channel of its own wrapping the gateway's
connection, which the front-end renders in the gateway's dialect.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.device_channel import DeviceChannel
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.ports import SubDeviceStore


@runtime_checkable
class GatewayChannel(DeviceChannel, Protocol):
    """A gateway's connection, which also delivers to the sub-devices behind it."""

    def push_subdevice_attributes(self, device: str, update: dict[str, Any]) -> None: ...

    def push_subdevice_rpc(self, device: str, request_id: int, method: str, params: Any) -> None: ...


class SubDeviceChannel:
    """One sub-device's channel: its gateway's connection, naming the sub-device."""

    __slots__ = ("device", "gateway")

    def __init__(self, gateway: GatewayChannel, device: DeviceIdentity) -> None:
        self.gateway = gateway
        self.device = device

    def push_attributes(self, update: dict[str, Any]) -> None:
        self.gateway.push_subdevice_attributes(self.device.name, update)

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        self.gateway.push_subdevice_rpc(self.device.name, request_id, method, params)


@dataclass(frozen=True, slots=True)
class SubDeviceLimits:
    max_per_gateway: int = 10_000
    max_per_message: int = 100
    default_product: str = "default"  # the product of a sub-device connected without a type


class SubDevices:
    def __init__(self, store: SubDeviceStore, limits: SubDeviceLimits, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self.limits = limits
        self._clock = clock
        self._known: dict[tuple[str, str], DeviceIdentity] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[DeviceIdentity]] = {}

    def cached(self, gateway: DeviceIdentity, name: str) -> DeviceIdentity | None:
        return self._known.get((gateway.device_id, name))

    async def resolve(self, gateway: DeviceIdentity, name: str, product: str | None = None) -> DeviceIdentity:
        """The sub-device named ``name``, created in the gateway's project when there is none.
        Concurrent requests for one new name share one lookup."""
        key = (gateway.device_id, name)
        known = self._known.get(key)
        if known is not None:
            return known
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = self._pending[key] = asyncio.get_running_loop().create_future()
        try:
            device = await self._store.subdevice(
                gateway, name, product or self.limits.default_product, self.limits.max_per_gateway,
                self._clock.now_ms(),
            )
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: the waiters, if any, get it through the shield
            raise
        finally:
            del self._pending[key]
        self._known[key] = device
        future.set_result(device)
        return device

    def forget_gateway(self, gateway_id: str) -> None:
        """The gateway's last connection here closed: its names may change owner meanwhile."""
        for key in [key for key in self._known if key[0] == gateway_id]:
            del self._known[key]
