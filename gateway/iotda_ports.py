"""What IoTDA's device side needs from storage, and the records it keeps there.

The device message log holds a device's messages (``UP``), events (``EVENT``) and the
operators' messages down (``DOWN``, with their delivery status); the shadow keeps the desired
properties per service, and which service each reported property came under.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fleetgate.core.model import Device


class Direction(enum.StrEnum):
    UP = "UP"
    DOWN = "DOWN"
    EVENT = "EVENT"


class MessageStatus(enum.StrEnum):
    """IoTDA's states of a message down, and RECEIVED for what a device sent."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    RECEIVED = "RECEIVED"


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    id: str
    device_id: str
    direction: Direction
    name: str | None
    content: Any
    status: MessageStatus
    created_at: int
    kind: str | None = None  # an event's "service_id/event_type"
    finished_at: int | None = None
    error: dict[str, Any] | None = None
    expires_at: int | None = None  # a message down: PENDING until then at most (CreateMessage's ttl)


@dataclass(frozen=True, slots=True)
class DesiredService:
    service_id: str
    properties: dict[str, Any]
    event_time: int
    version: int


class IotdaStore(Protocol):
    async def create_certificate_device(self, device: Device, fingerprint: str) -> None:
        """A device bound to a certificate by its SHA-256 fingerprint (NameTaken, CredentialsTaken)."""

    async def add_message(self, message: DeviceMessage) -> bool:
        """False when the device has a message of that id already, or no longer exists."""

    async def finish_message(
        self, device_id: str, message_id: str, status: MessageStatus, finished_at: int,
        error: dict[str, Any] | None = None,
    ) -> None: ...

    async def take_message(self, device_id: str, now: int, claim_ms: int) -> DeviceMessage | None:
        """The device's oldest PENDING message down not claimed in the last ``claim_ms``, claimed
        now; those past their expiration become TIMEOUT first."""

    async def release_message(self, device_id: str, message_id: str) -> None:
        """A message taken and not sent: PENDING and unclaimed again."""

    async def message(self, device_id: str, message_id: str) -> DeviceMessage | None: ...

    async def messages(self, device_id: str, direction: Direction, limit: int) -> list[DeviceMessage]:
        """Newest first."""

    async def remember_services(self, device_id: str, pairs: Sequence[tuple[str, str]]) -> None:
        """(property, service_id) pairs: which service each property was last reported under."""

    async def property_services(self, device_id: str) -> dict[str, str]: ...

    async def desired(self, device_id: str) -> list[DesiredService]: ...

    async def set_desired(self, device_id: str, service_id: str, properties: dict[str, Any], event_time: int,
                          version: int | None) -> DesiredService:
        """Merge ``properties`` into the service's desired ones (a null value removes one);
        Conflict when ``version`` is given and is not the stored one."""
