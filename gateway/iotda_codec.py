"""IoTDA's device payloads: reported properties as readings, event times, and the bodies the
gateway sends on the ``$oc`` topics.

``event_time`` is UTC in ``yyyyMMdd'T'HHmmss'Z'`` or ``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'``, or the
Python SDK's ``%Y-%m-%dT%H:%M:%SZ``; absent, null or unparsable, it is the time of receipt.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from typing import Any

from fleetgate.core.codec import PayloadLimits, key_values, loads
from fleetgate.core.errors import MalformedPayload, PayloadTooLarge
from fleetgate.core.telemetry_model import Reading

_FORMATS = ("%Y%m%dT%H%M%SZ", "%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ReportedProperties:
    """One ``properties/report``: its readings, and the service each property came under."""

    readings: tuple[Reading, ...]
    services: tuple[tuple[str, tuple[str, ...]], ...]  # (service_id, its properties' names)


def event_time(raw: Any, now_ms: int) -> int:
    """Unix milliseconds of an IoTDA ``event_time``; ``now_ms`` when absent, null or unparsable."""
    if not isinstance(raw, str) or not raw:
        return now_ms
    millis = 0
    text = raw
    if len(raw) == 24 and raw[19] == "." and raw.endswith("Z"):  # yyyy-MM-dd'T'HH:mm:ss.SSS'Z'
        if not raw[20:23].isdigit():
            return now_ms
        text, millis = raw[:19] + "Z", int(raw[20:23])
    for form in _FORMATS:
        try:
            return calendar.timegm(time.strptime(text, form)) * 1000 + millis
        except ValueError:
            continue
    return now_ms


def format_time(ms: int) -> str:
    """IoTDA's yyyyMMdd'T'HHmmss'Z'."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ms / 1000))


def properties_report(body: bytes, now_ms: int, limits: PayloadLimits) -> ReportedProperties:
    """``{"services": [{"service_id", "properties": {...}, "event_time"}]}`` as readings."""
    root = loads(body)
    services = root.get("services") if isinstance(root, dict) else None
    if not isinstance(services, list):
        raise MalformedPayload('A property report is {"services": [{"service_id", "properties", "event_time"}]}')
    readings = []
    named = []
    budget = limits.max_datapoints
    for service in services:
        if type(service) is not dict:
            raise MalformedPayload("Each service is a JSON object")
        service_id, properties = service.get("service_id"), service.get("properties")
        if type(service_id) is not str or not service_id or type(properties) is not dict:
            raise MalformedPayload("Each service needs a service_id and its properties (an object)")
        kvs = key_values(properties, limits)
        budget -= len(kvs)
        if budget < 0:
            raise PayloadTooLarge(f"More than {limits.max_datapoints} data points in one message")
        if kvs:
            raw_time = service.get("event_time")
            readings.append(Reading(now_ms if raw_time is None else event_time(raw_time, now_ms), kvs))
            named.append((service_id, tuple(properties)))
    return ReportedProperties(tuple(readings), tuple(named))


def object_of(body: bytes, what: str) -> dict[str, Any]:
    root = loads(body) if body else {}
    if not isinstance(root, dict):
        raise MalformedPayload(f"{what} must be a JSON object")
    return root
