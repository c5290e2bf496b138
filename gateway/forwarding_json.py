"""IoTDA's push JSON: the notification of an outbox entry, and its times, formatted once a second.

The delivery's hot paths (fleetgate.core.forwarding) write the same JSON as bytes around what
the outbox holds; :func:`notification` is the reference they are tested against, and what rules
with a ``where`` or ``select`` see.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from fleetgate.core.forwarding_model import Entry, OutboxItem

# Unix second -> (IoTDA's time, ISO 8601 to the second, the same two as bytes)
_SECONDS: dict[int, tuple[str, str, bytes, bytes]] = {}
_SECONDS_KEPT = 4096
SERVICE_ID = "telemetry"  # ThingsBoard's telemetry has no IoTDA service: one name for all of it
_SERVICE_ID = orjson.dumps(SERVICE_ID)


def _second(ms: int) -> tuple[str, str, bytes, bytes]:
    """Formatted once a second: the notifications of one second share it."""
    second = ms // 1000
    found = _SECONDS.get(second)
    if found is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        t = time.gmtime(second)
        iotda, iso = time.strftime("%Y%m%dT%H%M%SZ", t), time.strftime("%Y-%m-%dT%H:%M:%S", t)
        found = _SECONDS[second] = (iotda, iso, iso.encode(), iotda.encode())
    return found


def iotda_time(ms: int) -> str:
    """IoTDA's yyyyMMdd'T'HHmmss'Z'."""
    return _second(ms)[0]


def iso_time(ms: int) -> str:
    """IoTDA's yyyy-MM-dd'T'HH:mm:ss.SSS'Z'."""
    return f"{_second(ms)[1]}.{ms % 1000:03d}Z"


def services_of(entry: list[Any]) -> list[str | None]:
    """The IoTDA service of each reading of a property report entry (None: ThingsBoard's telemetry)."""
    return entry[2] if len(entry) > 2 else [None] * len(entry[1])


def notification(item: OutboxItem, entry: Entry, header: Mapping[str, Any]) -> dict[str, Any]:
    """IoTDA's push JSON for one entry of an outbox item."""
    if isinstance(entry, list):
        readings = entry[1]
        event_time = readings[0][0]
        body: Any = {"services": [{"service_id": service or SERVICE_ID, "properties": properties,
                                   "event_time": iso_time(ts)}
                                  for (ts, properties), service in zip(readings, services_of(entry))]}
    else:
        event_time, body = entry["t"], entry["b"]
    data = {
        "resource": item.resource,
        "event": item.event,
        "event_time": iotda_time(event_time),
        "event_time_ms": iso_time(event_time),
        "notify_data": {"header": header, "body": body},
    }
    if isinstance(entry, dict) and "r" in entry:
        data["request_id"] = entry["r"]  # a device message's id (IoTDA's message report)
    return data
