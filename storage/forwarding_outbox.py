"""The telemetry writer's part of forwarding: the outbox rows of a batch, COPYed in its transaction.

Which projects have an active device.property/report rule, and its actions, is cached here
(refreshed when rules change): a batch of a project with none costs one dict lookup a message.
A batch's notifications for one action are grouped by lane (a sixteenth of the devices, by a hash
of the device id): one outbox row a lane, its entries in the batch's order, each a message's
readings in the lines form of fleetgate.core.forwarding_lines (a JSON value embedded as JSON; for
an IoTDA device, each reading's service id), made into IoTDA's property report body, one service
a reading, at delivery; the header is read then too.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence

import orjson

from fleetgate.core.forwarding_lines import line, lines, prefix, single
from fleetgate.core.forwarding_model import LANES
from fleetgate.core.telemetry_model import TelemetryMessage, ValueType

COLUMNS = ("action_id", "lane", "resource", "event", "entries", "count", "created_at")
_LANES_KEPT = 100_000  # devices whose lane and line prefix are remembered


class TelemetryOutbox:
    def __init__(self, on_committed: Callable[[Sequence[str]], None] | None = None) -> None:
        self._actions: Mapping[int, tuple[str, ...]] = {}
        self._on_committed = on_committed
        self._devices: dict[str, tuple[int, bytes | None]] = {}  # device -> (lane, its lines' prefix)
        self._services: Callable[[str], Mapping[str, str] | None] = _no_services

    def follow_services(self, services: Callable[[str], Mapping[str, str] | None]) -> None:
        """A device's properties -> the IoTDA service it reported them under (IotdaUplink.services_of),
        as known in this process when the batch is written: the process that took the report."""
        self._services = services

    @property
    def active(self) -> bool:
        return bool(self._actions)

    def follow(self, actions: Mapping[int, tuple[str, ...]]) -> None:
        """Project number -> the actions its telemetry goes to (ForwardingStore.property_actions)."""
        self._actions = dict(actions)

    def records(self, telemetry: Sequence[TelemetryMessage], projects: Mapping[str, int]) -> list[tuple[object, ...]]:
        """The outbox rows of ``telemetry``: one an action and lane, none for a project without rules."""
        actions = self._actions
        if not actions:
            return []
        by_lane: dict[tuple[str, int], list[bytes]] = {}
        json_type = ValueType.JSON
        fragment = orjson.Fragment
        services_of = self._services
        devices = self._devices
        for message in telemetry:
            device_id = message.device_id
            targets = actions.get(projects.get(device_id, -1))
            if not targets or not message.readings:
                continue
            lane, start = devices.get(device_id) or self._device(device_id)
            services = services_of(device_id)
            # Compact: the readings as they are; the body is IoTDA's at delivery. An IoTDA
            # device's report is one reading a service, named by its properties.
            if len(message.readings) == 1 and start is not None:
                values = message.readings[0].values
                entry = single(start, message.readings[0].ts,
                               services.get(values[0].key) if services and values else None,
                               {k: (v if t is not json_type else fragment(v)) for k, t, v in values})
            else:
                readings = [(r.ts, {k: (v if t is not json_type else fragment(v)) for k, t, v in r.values})
                            for r in message.readings]
                named = [services.get(r.values[0].key) if r.values else None
                         for r in message.readings] if services else None
                entry = line(device_id, readings, named)
            for action_id in targets:
                by_lane.setdefault((action_id, lane), []).append(entry)
        now = time.time_ns() // 1_000_000
        return [(action_id, lane, "device.property", "report", lines(entries), len(entries), now)
                for (action_id, lane), entries in by_lane.items()]

    def _device(self, device_id: str) -> tuple[int, bytes | None]:
        if len(self._devices) >= _LANES_KEPT:
            self._devices.clear()
        found = self._devices[device_id] = (self._lane(device_id), prefix(device_id))
        return found

    def _lane(self, device_id: str) -> int:
        return zlib.crc32(device_id.encode()) % LANES

    def committed(self, records: Sequence[tuple[object, ...]]) -> None:
        if records and self._on_committed is not None:
            self._on_committed(tuple({r[0] for r in records}))  # type: ignore[misc]


def _no_services(_device_id: str) -> None:
    return None
