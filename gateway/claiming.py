"""ThingsBoard's device claiming (https://thingsboard.io/docs/user-guide/claiming-devices/).

A device (or a gateway, for its sub-devices) asks to be claimed with a secret key and a
duration. The gateway keeps the claim as ThingsBoard's ``claimingData`` server attribute,
the secret only as a hash. Until the claim expires, an operator of the device's project who
knows the device's name and the secret completes it, which assigns the device to a named
customer until the device is released.

As in ThingsBoard, the device's request is acknowledged whatever becomes of it: a claim for
a device already claimed, or whose product does not allow claiming, is dropped and logged,
and the operator completing it learns why it is refused.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleetgate.core import codec
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.credentials import hash_password, verify_password
from fleetgate.core.errors import (
    ClaimExpired, ClaimingNotAllowed, ClaimSecretMismatch, DeviceAlreadyClaimed, GatewayError, InvalidInput,
    MalformedPayload, NotFound,
)
from fleetgate.core.gateway_requests import per_device
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.ports import ClaimStore
from fleetgate.core.provisioning_model import ClaimingData
from fleetgate.core.subdevices import SubDevices

log = logging.getLogger(__name__)

DEFAULT_SECRET_KEY = ""  # ThingsBoard's DataConstants.DEFAULT_SECRET_KEY
DEFAULT_DURATION_MS = 86_400_000  # ThingsBoard's security.claim.duration
CLAIMING_DATA = "claimingData"  # the server attribute holding a claim in progress
_MAX_SECRET = 1024  # the secret is hashed with scrypt: a bound keeps that cost fixed
_MAX_DURATION_MS = 2**53  # JSON's exact integers; far beyond any claim
_CUSTOMER = re.compile(r"[^\x00-\x1f\x7f]{1,255}")


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """A device's ``{"secretKey": ..., "durationMs": ...}``; a duration of 0 means the default."""

    secret_key: str = DEFAULT_SECRET_KEY
    duration_ms: int = 0


def claim_request(body: bytes) -> ClaimRequest:
    """A device's claim request; an empty body asks with ThingsBoard's defaults, as does an
    absent field. MalformedPayload for anything but a JSON object of the right types."""
    if not body.strip():
        return ClaimRequest()
    return request_from_json(codec.loads(body))


def gateway_claim_requests(body: bytes, max_devices: int) -> dict[str, ClaimRequest]:
    """ThingsBoard's gateway claim ``{"A": {"secretKey": ..., "durationMs": ...}, ...}``; every
    device's request is checked before any is acted on."""
    return {name: request_from_json(payload) for name, payload in per_device(body, max_devices).items()}


def request_from_json(payload: Any) -> ClaimRequest:
    if not isinstance(payload, dict):
        raise MalformedPayload('A claim request is {"secretKey": ..., "durationMs": ...}')
    secret = payload.get("secretKey")
    if secret is None:
        secret = DEFAULT_SECRET_KEY
    if not isinstance(secret, str) or len(secret) > _MAX_SECRET:
        raise MalformedPayload(f"secretKey must be a string of at most {_MAX_SECRET} characters")
    duration = payload.get("durationMs")
    if duration is None:
        duration = 0
    elif isinstance(duration, str) and duration.strip().lstrip("-").isdigit():
        duration = int(duration)  # Gson's getAsLong, which ThingsBoard uses, reads a numeric string too
    if isinstance(duration, bool) or not isinstance(duration, int) or duration > _MAX_DURATION_MS:
        raise MalformedPayload("durationMs must be an integer number of milliseconds")
    # ThingsBoard: a duration that is not positive means the configured default.
    return ClaimRequest(secret, max(duration, 0))


class Claiming:
    def __init__(
        self, store: ClaimStore, *, default_duration_ms: int = DEFAULT_DURATION_MS, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._default_duration_ms = default_duration_ms
        self._clock = clock
        # Claims being registered after their device was answered: awaited by settled, ended by close.
        self._tasks: set[asyncio.Task[Any]] = set()

    # the device side

    def request(self, device: DeviceIdentity, request: ClaimRequest) -> None:
        """Register the device's claim; the device is answered at once, as ThingsBoard does."""
        self._spawn(self.register(device, request))

    def request_for_subdevices(
        self, gateway: DeviceIdentity, requests: Mapping[str, ClaimRequest], subdevices: SubDevices
    ) -> None:
        """A gateway's claims for its sub-devices, each found (or created) by name as for its other messages."""

        async def register(name: str, request: ClaimRequest) -> None:
            try:
                device = await subdevices.resolve(gateway, name)
            except GatewayError as exc:
                log.info("a gateway's claim for %s was refused: %s", name, exc.message,
                         extra={"device_id": gateway.device_id})
                return
            await self.register(device, request)

        for name, request in requests.items():
            self._spawn(register(name, request))

    async def register(self, device: DeviceIdentity, request: ClaimRequest) -> bool:
        """Store the claim as the device's ``claimingData``; False when it is dropped."""
        try:
            target = await self._store.claim_target(device.project_id, device_id=device.device_id)
            if target is None:
                return False
            if not target.allow_claiming:
                log.info("a claim was dropped: the device's product does not allow claiming",
                         extra={"device_id": device.device_id})
                return False
            if target.customer is not None:
                log.info("a claim was dropped: the device is claimed already", extra={"device_id": device.device_id})
                return False
            now = self._clock.now_ms()
            claim = ClaimingData(hash_password(request.secret_key),
                                 now + (request.duration_ms or self._default_duration_ms))
            return await self._store.save_claim(device.device_id, claim, now)
        except GatewayError as exc:
            log.warning("a claim could not be stored: %s", exc.message, extra={"device_id": device.device_id})
            return False

    async def settled(self) -> None:
        """Return once every claim asked for so far is stored or dropped."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, timeout: float = 5.0) -> None:
        """Let the claims under way finish for up to ``timeout`` seconds, then end the rest."""
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # the operator's side

    async def complete(self, project_id: str, device_name: str, secret_key: str, customer: str) -> str:
        """Assign the named device to ``customer`` if ``secret_key`` is its claim's; the device's id.
        Refused: NotFound, ClaimingNotAllowed, DeviceAlreadyClaimed, ClaimExpired (also when there
        is no claim), ClaimSecretMismatch."""
        if not isinstance(customer, str) or not _CUSTOMER.fullmatch(customer):
            raise InvalidInput("customer must be 1 to 255 characters without control characters")
        target = await self._store.claim_target(project_id, name=device_name)
        if target is None:
            raise NotFound("The project has no device of this name")
        if not target.allow_claiming:
            raise ClaimingNotAllowed()
        if target.customer is not None:
            raise DeviceAlreadyClaimed()
        claim = target.claim
        if claim is None or claim.expiration_time <= self._clock.now_ms():
            raise ClaimExpired()
        if not verify_password(secret_key, claim.secret_hash):
            raise ClaimSecretMismatch()
        if not await self._store.assign_customer(target.device_id, customer):
            raise DeviceAlreadyClaimed()  # claimed by someone else meanwhile
        return target.device_id

    async def release(self, project_id: str, device_id: str) -> None:
        """Free the device of its customer; releasing an unclaimed device changes nothing."""
        if not await self._store.release(project_id, device_id):
            raise NotFound(f"Device {device_id} does not exist")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
