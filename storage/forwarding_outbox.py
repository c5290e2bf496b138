"""The telemetry writer's part of forwarding: the outbox rows of a batch, COPYed in its transaction.

Which projects have an active device.property/report rule, and its actions, is cached here
(refreshed when rules change): a batch of a project with none costs one dict lookup a message.
A row is one message for one action; its body is IoTDA's property report body, one service a
reading (``{"services": [{"service_id", "properties", "event_time"}]}``), the header is read at
delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import orjson

from fleetgate.core.model import TelemetryMessage, ValueType

COLUMNS = ("action_id", "device_id", "resource", "event", "event_time", "body", "created_at")
SERVICE_ID = "telemetry"  # ThingsBoard's telemetry has no IoTDA service: one name for all of it


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class TelemetryOutbox:
    def __init__(self, on_committed: Callable[[Sequence[str]], None] | None = None) -> None:
        self._actions: Mapping[int, tuple[str, ...]] = {}
        self._on_committed = on_committed

    @property
    def active(self) -> bool:
        return bool(self._actions)

    def follow(self, actions: Mapping[int, tuple[str, ...]]) -> None:
        """Project number -> the actions its telemetry goes to (ForwardingStore.property_actions)."""
        self._actions = dict(actions)

    def records(self, telemetry: Sequence[TelemetryMessage], projects: Mapping[str, int]) -> list[tuple[object, ...]]:
        """The outbox rows of ``telemetry``: one a message and action, none for a project without rules."""
        actions = self._actions
        if not actions:
            return []
        now = time.time_ns() // 1_000_000
        out: list[tuple[object, ...]] = []
        for message in telemetry:
            targets = actions.get(projects.get(message.device_id, -1))
            if not targets or not message.readings:
                continue
            body = orjson.dumps({"services": [
                {"service_id": SERVICE_ID, "properties": {kv.key: _json(kv.type, kv.value) for kv in r.values},
                 "event_time": _iso(r.ts)} for r in message.readings]}).decode()
            ts = message.readings[0].ts
            for action_id in targets:
                out.append((action_id, message.device_id, "device.property", "report", ts, body, now))
        return out

    def committed(self, records: Sequence[tuple[object, ...]]) -> None:
        if records and self._on_committed is not None:
            self._on_committed(tuple({r[0] for r in records}))  # type: ignore[misc]


def _json(kind: ValueType, value: object) -> object:
    # A JSON value is kept as its text (json_v); embedded as JSON, not as a string.
    return orjson.Fragment(value) if kind is ValueType.JSON and isinstance(value, str) else value
