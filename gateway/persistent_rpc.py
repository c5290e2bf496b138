"""ThingsBoard's persistent RPC (https://thingsboard.io/docs/user-guide/rpc/): an operator's call
kept in the database until the device listens, for devices that sleep.

A call is stored QUEUED with an expiration time and a number of retries, and the processes on the
bus are told (Downlink.queued). The process where the device listens for server-side RPC (an
MQTT subscription to RPC requests, an RPC long poll, a CoAP RPC observation: Downlink.listen_rpc)
takes the device's oldest QUEUED call (SENT), sends it through the downlink to the listening
channels only (DELIVERED once the device has it), and settles it with the device's answer
(SUCCESSFUL, the answer kept; a one-way call is SUCCESSFUL once delivered). No answer within the
call's timeout: QUEUED again while retries remain, else TIMEOUT. Past its expiration time a
pending call is EXPIRED, when it is next read or sent. Then the device's next call, one at a time,
while it listens. A call delivered is never taken again, so a device reconnecting does not
receive it twice.

Nothing polls the table: a device starting to listen, or a new call for a device listening,
triggers one lookup, in a task this service owns.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.devices import require_device
from fleetgate.core.downlink import MAX_RPC_TIMEOUT, Downlink
from fleetgate.core.errors import DeviceNotConnected, GatewayError, InvalidInput, NotFound, RpcTimeout
from fleetgate.core.ids import new_id
from fleetgate.core.model import Page
from fleetgate.core.ports import DeviceLookup, PersistentRpcStore
from fleetgate.core.rpc_calls import PersistentCall, RpcStatus
from fleetgate.core.tasks import OwnedTasks

log = logging.getLogger(__name__)

MAX_RETRIES = 100
MAX_TTL_MS = 10 * 365 * 86_400_000
_SENT = frozenset((RpcStatus.SENT,))
_UNDER_WAY = frozenset((RpcStatus.SENT, RpcStatus.DELIVERED))


@dataclass(frozen=True, slots=True)
class PersistentRpcSettings:
    ttl_ms: int = 86_400_000  # a call's life when the operator gives no expiration time
    retries: int = 5  # ThingsBoard's actors.rpc.max_retries


class PersistentRpc:
    def __init__(
        self, store: PersistentRpcStore, devices: DeviceLookup, downlink: Downlink,
        settings: PersistentRpcSettings = PersistentRpcSettings(), *, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._devices = devices
        self._downlink = downlink
        self._settings = settings
        self._clock = clock
        self._tasks = OwnedTasks()  # one delivery per device listening in this process
        self._delivering: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # devices told of a call while their delivery was under way

    # the operator's side

    async def submit(
        self, project_id: str, device_id: str, method: str, params: Any, *, timeout: float, oneway: bool,
        expiration_time: int | None = None, retries: int | None = None,
    ) -> PersistentCall:
        """Store the call QUEUED and have it sent when the device listens; the call as stored."""
        if not method:
            raise InvalidInput("method is required")
        if not 0 < timeout <= MAX_RPC_TIMEOUT:
            raise InvalidInput(f"timeout must be more than 0 and at most {MAX_RPC_TIMEOUT:.0f} seconds")
        now = self._clock.now_ms()
        if expiration_time is None:
            expiration_time = now + self._settings.ttl_ms
        elif not now < expiration_time <= now + MAX_TTL_MS:
            raise InvalidInput("expiration_time must be later than now, and within ten years (Unix milliseconds)")
        if retries is None:
            retries = self._settings.retries
        elif not 0 <= retries <= MAX_RETRIES:
            raise InvalidInput(f"retries must be from 0 to {MAX_RETRIES}")
        await require_device(self._devices, project_id, device_id)
        call = PersistentCall(new_id(), device_id, method, params, oneway, round(timeout * 1000), expiration_time,
                              retries, created_at=now)
        await self._store.add_call(call)
        try:
            await self._downlink.queued(device_id)
        except GatewayError as exc:  # stored: it goes out when the device next listens
            log.warning("a persistent call was stored but not announced: %s", exc.message,
                        extra={"device_id": device_id})
        return call

    async def get(self, project_id: str, device_id: str, call_id: str) -> PersistentCall:
        await require_device(self._devices, project_id, device_id)
        call = await self._store.call(device_id, call_id, self._clock.now_ms())
        if call is None:
            raise NotFound(f"Command {call_id} does not exist")
        return call

    async def list(self, project_id: str, device_id: str, limit: int, marker: str, offset: int) -> Page:
        await require_device(self._devices, project_id, device_id)
        return await self._store.list_calls(device_id, limit, marker, offset, self._clock.now_ms())

    async def delete(self, project_id: str, device_id: str, call_id: str) -> None:
        await require_device(self._devices, project_id, device_id)
        if not await self._store.delete_call(device_id, call_id):
            raise NotFound(f"Command {call_id} does not exist")

    # delivery

    def listening(self, device_id: str) -> None:
        """The device listens for server-side RPC in this process (Downlink.on_listening), or a
        call was queued for it: send its queued calls, one at a time, while it listens."""
        if device_id in self._delivering:
            self._again.add(device_id)
            return
        task = self._delivering[device_id] = self._tasks.spawn(self._deliver(device_id))
        task.add_done_callback(functools.partial(self._done, device_id))  # also when cancelled before it ran

    async def _deliver(self, device_id: str) -> None:
        try:
            while self._downlink.listening(device_id):
                self._again.discard(device_id)
                call = await self._store.take_next(device_id, self._clock.now_ms())
                if call is None:
                    if device_id in self._again:
                        continue
                    return
                if not await self._attempt(call):
                    return
        except GatewayError as exc:
            log.warning("persistent calls could not be sent: %s", exc.message, extra={"device_id": device_id})
        finally:
            self._done(device_id, asyncio.current_task())
            self._again.discard(device_id)

    def _done(self, device_id: str, task: asyncio.Task[Any] | None) -> None:
        if self._delivering.get(device_id) is task:
            del self._delivering[device_id]

    async def _attempt(self, call: PersistentCall) -> bool:
        """Send the SENT ``call`` once and settle what came of it; False when it did not reach the
        device (the bus did not bring it to a listening channel in time): the next calls wait too."""
        now = self._clock.now_ms()
        left = call.expiration_time - now
        if left <= 0:
            await self._settle(call, RpcStatus.EXPIRED, _SENT)
            return True

        written: list[asyncio.Task[bool]] = []

        def delivered() -> None:
            written.append(self._tasks.spawn(self._store.settle(
                call.id, RpcStatus.DELIVERED, _SENT, self._clock.now_ms(), delivered=True)))

        try:
            try:
                response = await self._downlink.call(
                    call.device_id, call.method, call.params, timeout=min(call.timeout_ms, left) / 1000,
                    oneway=call.oneway, listeners_only=True, on_delivered=delivered,
                )
            finally:  # DELIVERED is written before what follows it
                await asyncio.gather(*written)
        except DeviceNotConnected:  # it stopped listening meanwhile: the call waits for the next time
            await self._settle(call, RpcStatus.QUEUED, _SENT)
            return False
        except RpcTimeout:
            # Waited until the expiration time (timers may fire a little early): expired.
            if call.timeout_ms >= left or self._clock.now_ms() >= call.expiration_time:
                await self._settle(call, RpcStatus.EXPIRED, _UNDER_WAY)
            elif call.attempts < call.retries:
                await self._settle(call, RpcStatus.QUEUED, _UNDER_WAY)
            else:
                await self._settle(call, RpcStatus.TIMEOUT, _UNDER_WAY)
        except GatewayError as exc:
            log.warning("a persistent call failed: %s", exc.message, extra={"device_id": call.device_id})
            await self._settle(call, RpcStatus.FAILED, _UNDER_WAY)
        else:
            await self._settle(call, RpcStatus.SUCCESSFUL, _UNDER_WAY, response)
        return True

    async def _settle(
        self, call: PersistentCall, status: RpcStatus, expected: frozenset[RpcStatus], response: Any = None
    ) -> None:
        await self._store.settle(call.id, status, expected, self._clock.now_ms(), response=response)

    async def settled(self) -> None:
        """Return once no delivery is under way in this process."""
        while self._delivering:
            await asyncio.wait(set(self._delivering.values()))

    async def close(self) -> None:
        """End the deliveries under way: a call waiting for its answer stays as it is, and expires."""
        await self._tasks.finish()
