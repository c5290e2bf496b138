"""What the gateway sends to devices: shared-attribute updates and server-side RPC.

A front-end attaches a channel for each authenticated device session
(fleetgate.core.device_channel); the core reaches the device through whichever channels it
has, whatever their protocol, and other processes through the bus.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fleetgate.core import iotda_downlink, metrics
from fleetgate.core.device_channel import DeviceChannel, SessionLimits, attribute_update, client_rpc
from fleetgate.core.errors import DeviceNotConnected, GatewayError, InvalidInput, RpcTimeout
from fleetgate.core.lingering import Lingering
from fleetgate.core.local_bus import LocalBus
from fleetgate.core.ports import DownlinkBus
from fleetgate.core.rpc_origins import RpcOrigins
from fleetgate.core.tasks import OwnedTasks
from fleetgate.core.telemetry_model import KeyValue

log = logging.getLogger(__name__)

MAX_RPC_TIMEOUT = 600.0


_RPC_IDS = 2**31 - 1
# How long a call waits for some process to say it handed the request to the device.
DELIVERY_TIMEOUT = 2.0
# Devices one bulk attribute update names on the bus (an OTA package assigned to a product): an
# event stays a few NOTIFY pieces, and a product of 100,000 devices is 100 events, not 100,000.
BULK_DEVICES = 1_000


@dataclass(slots=True)
class _Call:
    delivered: asyncio.Future[None]
    reply: asyncio.Future[Any] | None
    held_until: float | None = None  # a process keeps the request for the device's return until then


class Downlink:
    """Device channels of this process, and the events that reach them from any process.

    Every downlink event goes through the bus (to every process, or on a routing bus only to
    those holding the device, each told when this one attaches or detaches one), and each
    process acts on the ones for devices it holds: an attribute update is pushed; an RPC request is pushed and
    "delivered" is published back, so the caller knows the device is connected; the
    device's reply is published for whichever process waits for it. RPC ids are random
    (31 bits), so calls made at once through different processes do not collide.
    """

    def __init__(
        self, limits: SessionLimits, bus: DownlinkBus | None = None, delivery_timeout: float = DELIVERY_TIMEOUT
    ) -> None:
        self.limits = limits
        self._delivery_timeout = delivery_timeout
        if bus is None:
            bus = local = LocalBus()
            local.receiver = self.receive
        self._bus: DownlinkBus = bus
        self._tasks = OwnedTasks()  # publishing "delivered" and replies
        self._channels: dict[str, set[DeviceChannel]] = {}
        # The channels that take server-side RPC now (an MQTT subscription to RPC requests, an RPC
        # long poll or observation), told by rpc_listening: persistent calls go to these only.
        self._listeners: dict[str, set[DeviceChannel]] = {}
        # Told of a device that listens in this process, or of a new persistent call for one.
        self.on_listening: Callable[[str], None] | None = None
        # Told of a device whose credentials changed (disconnect): its cached ones are stale.
        self.on_revoked: Callable[[str], None] | None = None
        self._calls: dict[tuple[str, int], _Call] = {}
        self._origins = RpcOrigins(delivery_timeout, MAX_RPC_TIMEOUT)  # of calls made elsewhere
        # Devices whose last channel went with a grace (an HTTP poll answered): calls held for them.
        self._lingering = Lingering(self._linger_over)

    @property
    def bus(self) -> DownlinkBus:
        return self._bus

    def attach(self, device_id: str, channel: DeviceChannel) -> None:
        channels = self._channels.get(device_id)
        if channels is None:
            channels = self._channels[device_id] = set()
            if device_id in self._lingering:  # back within its grace: still subscribed on the bus
                held = self._lingering.back(device_id)
                if held:  # delivered once the front-end is done attaching the channel
                    asyncio.get_running_loop().call_soon(self._redeliver, held)
            else:
                self._bus.subscribe(device_id)
        channels.add(channel)

    def detach(self, device_id: str, channel: DeviceChannel, linger: float = 0.0) -> None:
        """``linger``: seconds the device, if this was its last channel, is expected back (an HTTP
        device polls again once its poll is answered): a call made meanwhile waits for it."""
        for table in (self._channels, self._listeners):
            channels = table.get(device_id)
            if channels is not None:
                channels.discard(channel)
                if not channels:
                    del table[device_id]
                    if table is self._channels:
                        if linger > 0:
                            self._lingering.start(device_id, linger)
                        else:
                            self._bus.unsubscribe(device_id)

    def _linger_over(self, device_id: str) -> None:
        if device_id not in self._channels:
            self._bus.unsubscribe(device_id)

    def _redeliver(self, held: list[dict[str, Any]]) -> None:
        for event in held:
            self._rpc(event)

    def listen_rpc(self, device_id: str, channel: DeviceChannel) -> None:
        """The attached ``channel`` takes server-side RPC from now on."""
        self._listeners.setdefault(device_id, set()).add(channel)
        if self.on_listening is not None:
            self.on_listening(device_id)

    def unlisten_rpc(self, device_id: str, channel: DeviceChannel) -> None:
        """The ``channel`` takes server-side RPC no more (an MQTT UNSUBSCRIBE from the RPC topic):
        persistent calls wait for the device to listen again. It stays attached."""
        channels = self._listeners.get(device_id)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self._listeners[device_id]

    def listening(self, device_id: str) -> bool:
        """Whether a channel of the device in this process takes server-side RPC."""
        return device_id in self._listeners

    async def disconnect(self, device_id: str) -> None:
        """Close the device's connections, in whichever process holds them (IoTDA's
        force_disconnect); each of those processes forgets its cached credentials too."""
        await self._bus.publish({"t": "disconnect", "d": device_id})

    def _disconnect(self, device_id: str) -> None:
        if self.on_revoked is not None:
            self.on_revoked(device_id)
        for channel in list(self._channels.get(device_id, ())):
            close = getattr(channel, "disconnect", None)  # a connection (MQTT), not a request
            if close is not None:
                close()

    async def queued(self, device_id: str) -> None:
        """Tell whichever process the device listens in that a persistent call waits for it."""
        await self._bus.publish({"t": "queued", "d": device_id})

    def connected(self, device_id: str) -> bool:
        """Whether this process holds a connection of the device."""
        return device_id in self._channels

    async def attributes_changed(self, device_id: str, updated: Sequence[KeyValue], deleted: Sequence[str]) -> None:
        await self._bus.publish({"t": "attributes", "d": device_id, "u": attribute_update(updated, deleted)})

    async def attributes_changed_many(
        self, device_ids: Sequence[str], updated: Sequence[KeyValue], deleted: Sequence[str]
    ) -> None:
        """The same update for many devices: one event to every process per BULK_DEVICES devices
        (``"ds"`` in place of ``"d"``), each process pushing it to the devices it holds."""
        if len(device_ids) == 1:
            await self.attributes_changed(device_ids[0], updated, deleted)
            return
        update = attribute_update(updated, deleted)
        for start in range(0, len(device_ids), BULK_DEVICES):
            await self._bus.publish({"t": "attributes", "ds": list(device_ids[start:start + BULK_DEVICES]),
                                     "u": update})

    async def call(
        self, device_id: str, method: str, params: Any, *, timeout: float, oneway: bool,
        listeners_only: bool = False, on_delivered: Callable[[], None] | None = None,
        iotda: dict[str, Any] | None = None, request_id: int | None = None,
    ) -> Any:
        """Send an RPC request to the device; for a two-way call, wait for its reply.
        ``listeners_only``: to the channels that take RPC (and delivered only by one of them);
        ``on_delivered`` is called once the device has the request. ``iotda``: the request as an
        IoTDA device takes it (fleetgate.core.iotda_downlink), with the caller's ``request_id``."""
        if not method:
            raise InvalidInput("method is required")
        if not 0 < timeout <= MAX_RPC_TIMEOUT:
            raise InvalidInput(f"timeout must be more than 0 and at most {MAX_RPC_TIMEOUT:.0f} seconds")
        loop = asyncio.get_running_loop()
        key = (device_id, request_id or secrets.randbelow(_RPC_IDS) + 1)
        call = self._calls[key] = _Call(loop.create_future(), None if oneway else loop.create_future())
        deadline = loop.time() + timeout
        try:
            event = {"t": "rpc", "d": device_id, "i": key[1], "m": method, "p": params}
            if listeners_only:
                event["l"] = 1
            if iotda is not None:
                event["x"] = iotda
            if not oneway:  # how long the holder keeps this process's address for the reply
                event["w"] = timeout
            await self._bus.publish(event)
            if not await self._delivered(call, event, min(self._delivery_timeout, timeout), deadline):
                raise DeviceNotConnected(f"Device {device_id} is not connected") from None
            if on_delivered is not None:
                on_delivered()
            if call.reply is None:
                return None
            try:
                async with asyncio.timeout_at(deadline):
                    return await call.reply
            except TimeoutError:
                raise RpcTimeout(f"Device {device_id} did not answer {method!r} within {timeout:g} s") from None
        finally:
            del self._calls[key]

    async def _delivered(self, call: _Call, event: dict[str, Any], limit: float, deadline: float) -> bool:
        """Whether the request reached the device within ``limit``. It is published once more
        halfway: a bus may lose a message while a process moves to another of its servers
        (a NATS node lost), and the holder pushes a request it has seen only once. A request
        held for a device between two polls ("held") waits for its return, within the call's
        timeout."""
        for attempt in range(2):
            try:
                async with asyncio.timeout(limit / 2):
                    await asyncio.shield(call.delivered)
                return True
            except TimeoutError:
                if attempt == 0:
                    await self._bus.publish(event)
        if call.held_until is not None:
            try:
                async with asyncio.timeout_at(min(call.held_until + limit, deadline)):
                    await asyncio.shield(call.delivered)
                return True
            except TimeoutError:
                pass
        return False

    def rpc_reply(self, device_id: str, request_id: int, reply: Any) -> None:
        """A device's answer to a server-side call, for whichever process waits for it."""
        if not self._settle(device_id, request_id, reply):
            event = {"t": "reply", "d": device_id, "i": request_id, "r": reply}
            origin = self._origins.pop(device_id, request_id)
            if origin is not None:
                event["a"] = origin
            self._tasks.spawn(self._publish(event))

    def receive(self, event: dict[str, Any]) -> None:
        """An event from the bus (the bus calls this; malformed events are logged and dropped)."""
        try:
            if "ds" in event:
                self._bulk_attributes(event["ds"], event["u"])
                return
            kind, device_id = event["t"], event["d"]
            here = (device_id in self._channels or (device_id, event.get("i")) in self._calls
                    or device_id in self._lingering)
            metrics.DOWNLINK_BUS_EVENTS.labels("yes" if here else "no").inc()
            if kind == "attributes":
                for channel in list(self._channels.get(device_id, ())):
                    channel.push_attributes(event["u"])
            elif kind == "rpc":
                self._rpc(event)
            elif kind == "held":
                call = self._calls.get((device_id, event["i"]))
                if call is not None:
                    call.held_until = asyncio.get_running_loop().time() + float(event["g"])
            elif kind == "delivered":
                self._lingering.forget(device_id, event["i"])  # it reached the device elsewhere
                call = self._calls.get((device_id, event["i"]))
                if call is not None and not call.delivered.done():
                    call.delivered.set_result(None)
            elif kind == "reply":
                self._settle(device_id, event["i"], event.get("r"))
            elif kind == "queued":
                if device_id in self._listeners and self.on_listening is not None:
                    self.on_listening(device_id)
            elif kind == "disconnect":
                self._disconnect(device_id)
        except (KeyError, TypeError) as exc:
            log.warning("a malformed downlink event was dropped: %r", exc)

    def _rpc(self, event: dict[str, Any]) -> None:
        device_id = event["d"]
        if device_id not in self._channels and device_id in self._lingering and not event.get("l"):
            self._hold(event)
            return
        self._deliver(device_id, event["i"], event["m"], event.get("p"), bool(event.get("l")),
                      event.get("o"), event.get("w"), event.get("x"))

    def _hold(self, event: dict[str, Any]) -> None:
        """Keep a lightweight call for a device between two connections, and tell its caller to wait."""
        left = self._lingering.hold(event)
        if left is None:
            return
        device_id, request_id = event["d"], event["i"]
        call = self._calls.get((device_id, request_id))
        if call is not None:  # made here
            call.held_until = asyncio.get_running_loop().time() + left
            return
        held: dict[str, Any] = {"t": "held", "d": device_id, "i": request_id, "g": left}
        if event.get("o") is not None:
            held["a"] = event["o"]
        self._tasks.spawn(self._publish(held))

    def _bulk_attributes(self, device_ids: list[str], update: dict[str, Any]) -> None:
        held = [device_id for device_id in device_ids if device_id in self._channels]
        metrics.DOWNLINK_BUS_EVENTS.labels("yes" if held else "no").inc()
        for device_id in held:
            for channel in list(self._channels.get(device_id, ())):
                channel.push_attributes(update)

    def _deliver(
        self, device_id: str, request_id: int, method: str, params: Any, listeners_only: bool,
        origin: str | None = None, wait: float | None = None, iotda: dict[str, Any] | None = None,
    ) -> None:
        channels = (self._listeners if listeners_only else self._channels).get(device_id)
        if not channels:
            return
        if self._origins.seen(device_id, request_id):  # published again (Downlink._delivered): the receipt only
            pass
        elif iotda is None:
            for channel in list(channels):
                channel.push_rpc(request_id, method, params)
        # Delivered only if some connection speaks the request's dialect.
        elif not [channel for channel in list(channels) if iotda_downlink.deliver(channel, request_id, method,
                                                                                  params, iotda)]:
            self._origins.unseen(device_id, request_id)
            return
        call = self._calls.get((device_id, request_id))
        if call is not None:  # the call was made here: no need to tell the others
            if not call.delivered.done():
                call.delivered.set_result(None)
        elif origin is None:
            self._tasks.spawn(self._publish({"t": "delivered", "d": device_id, "i": request_id}))
        else:
            if wait is not None:
                self._origins.remember(device_id, request_id, origin, float(wait))
            self._tasks.spawn(self._publish({"t": "delivered", "d": device_id, "i": request_id, "a": origin}))

    def push_iotda(self, device_id: str, kind: str, body: dict[str, Any]) -> None:
        """An IoTDA message to the device's connections in this process (an answer to its event)."""
        for channel in list(self._channels.get(device_id, ())):
            iotda_downlink.push(channel, kind, body)

    async def _publish(self, event: dict[str, Any]) -> None:
        """An answer on the bus, from a task: the caller times out if it does not get there."""
        try:
            await self._bus.publish(event)
        except GatewayError as exc:
            log.warning("a downlink %s was not sent: %s", event["t"], exc.message,
                        extra={"device_id": event["d"]})

    def _settle(self, device_id: str, request_id: int, reply: Any) -> bool:
        call = self._calls.get((device_id, request_id))
        if call is None or call.reply is None:
            return False
        if not call.reply.done():
            call.reply.set_result(reply)
        return True

    async def close(self) -> None:
        self._lingering.close()
        await self._tasks.finish(1.0)

    def client_rpc(self, method: Any, params: Any) -> dict[str, Any]:
        """A device's own call: the gateway answers the ones it knows and says so for the rest."""
        return client_rpc(self.limits, method, params)

