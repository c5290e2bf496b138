"""What the gateway sends to devices: shared-attribute updates and server-side RPC.

A front-end attaches a channel for each authenticated device session; the core
reaches the device through whichever channels it has, whatever their protocol.
Client-side RPC that the gateway answers itself (``getSessionLimits``) is here too.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.errors import DeviceNotConnected, InvalidInput, RpcTimeout
from gateway.model import KeyValue, ValueType

log = logging.getLogger(__name__)

MAX_RPC_TIMEOUT = 600.0


class DeviceChannel(Protocol):
    """One device session, as a front-end delivers to it (an MQTT session, a CoAP observer...)."""

    def push_attributes(self, update: dict[str, Any]) -> None: ...

    def push_rpc(self, request_id: int, method: str, params: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What ``getSessionLimits`` answers: the limits this gateway really enforces."""

    max_payload_size: int
    max_inflight_messages: int

    def to_json(self) -> dict[str, Any]:
        # An empty rate-limit string means "no limit" to ThingsBoard's SDK.
        return {
            "maxPayloadSize": self.max_payload_size,
            "maxInflightMessages": self.max_inflight_messages,
            "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""},
        }


def attribute_update(updated: Sequence[KeyValue], deleted: Sequence[str]) -> dict[str, Any]:
    """ThingsBoard's update body: {"key": value, ...} and "deleted": [keys] when keys went away."""
    body: dict[str, Any] = {kv.key: orjson.loads(kv.value) if kv.type is ValueType.JSON else kv.value
                            for kv in updated}
    if deleted:
        body["deleted"] = list(deleted)
    return body


class Downlink:
    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self._channels: dict[str, set[DeviceChannel]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._ids: dict[str, itertools.count[int]] = {}

    def attach(self, device_id: str, channel: DeviceChannel) -> None:
        self._channels.setdefault(device_id, set()).add(channel)

    def detach(self, device_id: str, channel: DeviceChannel) -> None:
        channels = self._channels.get(device_id)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self._channels[device_id]

    def connected(self, device_id: str) -> bool:
        return device_id in self._channels

    def attributes_changed(self, device_id: str, updated: Sequence[KeyValue], deleted: Sequence[str]) -> None:
        channels = self._channels.get(device_id)
        if channels:
            update = attribute_update(updated, deleted)
            for channel in list(channels):
                channel.push_attributes(update)

    async def call(self, device_id: str, method: str, params: Any, *, timeout: float, oneway: bool) -> Any:
        """Send an RPC request to the device; for a two-way call, wait for its reply."""
        if not method:
            raise InvalidInput("method is required")
        if not 0 < timeout <= MAX_RPC_TIMEOUT:
            raise InvalidInput(f"timeout must be more than 0 and at most {MAX_RPC_TIMEOUT:.0f} seconds")
        channels = self._channels.get(device_id)
        if not channels:
            raise DeviceNotConnected(f"Device {device_id} is not connected")
        request_id = next(self._ids.setdefault(device_id, itertools.count(1)))
        if oneway:
            for channel in list(channels):
                channel.push_rpc(request_id, method, params)
            return None
        key = (device_id, request_id)
        future = self._pending[key] = asyncio.get_running_loop().create_future()
        try:
            for channel in list(channels):
                channel.push_rpc(request_id, method, params)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise RpcTimeout(f"Device {device_id} did not answer {method!r} within {timeout:g} s") from None
        finally:
            self._pending.pop(key, None)

    def rpc_reply(self, device_id: str, request_id: int, reply: Any) -> bool:
        """A device's answer to a server-side call; False when nobody waits for it (late, or one-way)."""
        future = self._pending.get((device_id, request_id))
        if future is None or future.done():
            return False
        future.set_result(reply)
        return True

    def client_rpc(self, method: Any, params: Any) -> dict[str, Any]:
        """A device's own call: the gateway answers the ones it knows and says so for the rest."""
        if method == "getSessionLimits":
            return self.limits.to_json()
        return {"error": f"Unsupported RPC method: {method}"}
