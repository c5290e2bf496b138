"""IoTDA's messages down (CreateMessage), cached while the device is offline, for their ttl.

A message is stored PENDING with its expiration time (``ttl`` minutes: IoTDA's default 1,440, a
multiple of 5, at most 1,440) and the processes are told, through the same announcement and
trigger as persistent RPC (Downlink.queued, Downlink.on_listening). The process where the device
is connected in IoTDA's dialect (whose channel takes requests from CONNECT on, Huawei's SDK never
subscribing) takes the device's PENDING messages, oldest first, one at a time, and sends each:
DELIVERED once the device has it. A PENDING message past its expiration is TIMEOUT, IoTDA's
state, whether it is read or about to be sent. A ttl of 0 caches nothing: the message goes now,
or is FAILED.

Taking a message marks it claimed for a while (so two processes holding the device do not both
send it) and a message not sent is released, PENDING again. Nothing polls: the device connecting,
or a new message for a device connected, triggers one lookup, in a task this service owns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any

from fleetgate.core import iotda_downlink as kinds
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.devices import require_device
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import Conflict, DeviceNotConnected, GatewayError, InvalidInput, NotFound
from fleetgate.core.ids import new_id
from fleetgate.core.iotda_ports import DeviceMessage, Direction, IotdaStore, MessageStatus
from fleetgate.core.ports import DeviceLookup
from fleetgate.core.tasks import OwnedTasks

log = logging.getLogger(__name__)

DEFAULT_TTL_MINUTES = 1_440  # IoTDA caches a message a day unless told otherwise
MAX_TTL_MINUTES = 1_440
_MINUTE_MS = 60_000
# How long a process may hold a message it took before another may take it (it sends it within
# the downlink's delivery timeout, seconds).
CLAIM_MS = 60_000
_OFFLINE = {"error_code": "IOTDA.014016", "error_msg": "The device is not online"}


def validated_ttl(ttl: Any) -> int:
    if ttl is None:
        return DEFAULT_TTL_MINUTES
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL_MINUTES or ttl % 5:
        raise InvalidInput(f"ttl must be minutes from 0 to {MAX_TTL_MINUTES}, a multiple of 5")
    return ttl


def current(message: DeviceMessage, now_ms: int) -> DeviceMessage:
    """The message as it stands now: a PENDING one past its expiration is TIMEOUT."""
    if message.status is MessageStatus.PENDING and message.expires_at is not None and message.expires_at <= now_ms:
        return dataclasses.replace(message, status=MessageStatus.TIMEOUT, finished_at=message.expires_at)
    return message


class IotdaMessages:
    def __init__(
        self, devices: DeviceLookup, downlink: Downlink, store: IotdaStore, *, timeout: float,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._devices = devices
        self._downlink = downlink
        self._store = store
        self._timeout = timeout
        self._clock = clock
        self._tasks = OwnedTasks()  # uncached messages being sent, and one delivery per device connected here
        self._delivering: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # devices told of a message while their delivery was under way
        self._sending: set[asyncio.Task[None]] = set()  # uncached messages (ttl 0) being sent

    async def create(
        self, project_id: str, device_id: str, message: Any, *, message_id: str | None = None,
        name: str | None = None, ttl: Any = None,
    ) -> DeviceMessage:
        """Record the message PENDING and answer at once; it goes when the device is connected."""
        minutes = validated_ttl(ttl)
        await require_device(self._devices, project_id, device_id)
        if message is None:
            raise InvalidInput("message is required")
        now = self._clock.now_ms()
        record = DeviceMessage(message_id or new_id(), device_id, Direction.DOWN, name, message,
                               MessageStatus.PENDING, now, expires_at=now + minutes * _MINUTE_MS if minutes else None)
        if not await self._store.add_message(record):
            raise Conflict(f"The device has a message {record.id} already")
        if minutes == 0:
            task = self._tasks.spawn(self._send_now(record))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            return record
        try:
            await self._downlink.queued(device_id)
        except GatewayError as exc:  # stored: it goes when the device next connects
            log.warning("message %s was stored but not announced: %s", record.id, exc.message,
                        extra={"device_id": device_id})
        return record

    async def message(self, project_id: str, device_id: str, message_id: str) -> DeviceMessage:
        await require_device(self._devices, project_id, device_id)
        found = await self._store.message(device_id, message_id)
        if found is None:
            raise NotFound(f"Message {message_id} does not exist")
        return current(found, self._clock.now_ms())

    async def messages(self, project_id: str, device_id: str, direction: Direction, limit: int) -> list[DeviceMessage]:
        await require_device(self._devices, project_id, device_id)
        now = self._clock.now_ms()
        return [current(m, now) for m in await self._store.messages(device_id, direction, limit)]

    # delivery

    def listening(self, device_id: str) -> None:
        """The device takes requests in this process (Downlink.on_listening), or a message was
        queued for it: send its PENDING messages, one at a time, while it does."""
        if device_id in self._delivering:
            self._again.add(device_id)
            return
        task = self._delivering[device_id] = self._tasks.spawn(self._deliver(device_id))
        task.add_done_callback(functools.partial(self._done, device_id))  # also when cancelled before it ran

    def _done(self, device_id: str, task: asyncio.Task[Any] | None) -> None:
        if self._delivering.get(device_id) is task:
            del self._delivering[device_id]

    async def _deliver(self, device_id: str) -> None:
        try:
            while self._downlink.listening(device_id):
                self._again.discard(device_id)
                record = await self._store.take_message(device_id, self._clock.now_ms(), CLAIM_MS)
                if record is None:
                    if device_id in self._again:
                        continue
                    return
                if not await self._send(record, cached=True):
                    return
        except GatewayError as exc:
            log.warning("messages down could not be sent: %s", exc.message, extra={"device_id": device_id})
        finally:
            self._done(device_id, asyncio.current_task())
            self._again.discard(device_id)

    async def _send_now(self, record: DeviceMessage) -> None:
        try:
            await self._send(record, cached=False)
        except GatewayError as exc:
            log.warning("the status of message %s was not stored: %s", record.id, exc.message)

    async def _send(self, record: DeviceMessage, *, cached: bool) -> bool:
        """Send it once and store what came of it; False when it did not reach the device (a
        cached message is PENDING again, for the device's next connection)."""
        body = {"object_device_id": record.device_id, "id": record.id, "name": record.name,
                "content": record.content}
        status, error = MessageStatus.DELIVERED, None
        try:
            await self._downlink.call(record.device_id, kinds.MESSAGE, None, timeout=self._timeout, oneway=True,
                                      listeners_only=cached, iotda={"k": kinds.MESSAGE, "b": body})
        except DeviceNotConnected:
            if cached:
                await self._store.release_message(record.device_id, record.id)
                return False
            status, error = MessageStatus.FAILED, _OFFLINE
        except GatewayError as exc:
            status, error = MessageStatus.FAILED, {"error_code": "IOTDA.000001", "error_msg": exc.message}
        await self._store.finish_message(record.device_id, record.id, status, self._clock.now_ms(), error)
        return True

    async def settled(self) -> None:
        """Return once no delivery is under way in this process."""
        while self._delivering or self._sending:
            await asyncio.wait({*self._delivering.values(), *self._sending})

    async def close(self) -> None:
        await self._tasks.finish(1.0)
