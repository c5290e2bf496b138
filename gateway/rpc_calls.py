"""A persistent RPC call as the core and its store share it (fleetgate.core.persistent_rpc)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class RpcStatus(enum.Enum):
    """ThingsBoard's RpcStatus: where a persistent call is."""

    QUEUED = "QUEUED"  # stored, waiting for the device to listen
    SENT = "SENT"  # handed to the device's connection
    DELIVERED = "DELIVERED"  # the connection took it: the device has it
    SUCCESSFUL = "SUCCESSFUL"  # answered (a one-way call: delivered)
    TIMEOUT = "TIMEOUT"  # no answer in time, and no retry left
    EXPIRED = "EXPIRED"  # its expiration time passed first
    FAILED = "FAILED"  # it could not be sent

    @property
    def pending(self) -> bool:
        return self in _PENDING


_PENDING = frozenset((RpcStatus.QUEUED, RpcStatus.SENT, RpcStatus.DELIVERED))


@dataclass(frozen=True, slots=True)
class PersistentCall:
    id: str
    device_id: str
    method: str
    params: Any
    oneway: bool
    timeout_ms: int  # how long each attempt waits for the answer
    expiration_time: int  # Unix ms: past it, the call is EXPIRED
    retries: int  # attempts after the first, when one gets no answer
    status: RpcStatus = RpcStatus.QUEUED
    attempts: int = 0  # attempts delivered so far
    response: Any = None
    created_at: int = 0
