"""Frozen types of device connectivity: a device's status as read, and what one process reports of it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DeviceStatus(enum.StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


@dataclass(frozen=True, slots=True)
class Connectivity:
    """A device's status as read (fleetgate.core.presence), with its last times in Unix
    milliseconds; None: never."""

    status: DeviceStatus = DeviceStatus.OFFLINE
    last_online_time: int | None = None
    last_offline_time: int | None = None
    last_activity_time: int | None = None


@dataclass(frozen=True, slots=True)
class PresenceBatch:
    """What one process learnt of its devices' connectivity since its last write
    (fleetgate.core.presence); activity is as of ``now``, to within one write interval."""

    process_id: str
    now: int
    lease_until: int  # the process's own lease: its connections count until then
    opened: tuple[tuple[str, int], ...] = ()  # connections opened here: (device, since)
    seen: tuple[str, ...] = ()  # devices active on a connection held here
    requests: tuple[str, ...] = ()  # devices active by request: online until now + inactivity timeout
    online_until: int = 0  # the requests' lease
    released: tuple[str, ...] = ()  # connections closed with the device still online by its last request
    closed: tuple[tuple[str, int], ...] = ()  # connections closed, the device offline: (device, when)
