"""Fleet queries: the latest values of chosen keys for every device of a project or a product,
optionally of one status, a page at a time (docs/queries.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fleetgate.core.errors import InvalidInput
from fleetgate.core.presence_model import DeviceStatus
from fleetgate.core.telemetry_model import LatestTelemetry

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_KEYS = 100


@dataclass(frozen=True, slots=True)
class FleetQuery:
    """Devices by id, descending (IoTDA's order), those with ids below ``marker`` when it is
    set."""

    project_id: str
    keys: tuple[str, ...]
    product_id: str | None = None
    status: DeviceStatus | None = None
    limit: int = DEFAULT_PAGE
    marker: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceLatest:
    device_id: str
    device_name: str
    product_id: str
    status: DeviceStatus
    values: Mapping[str, LatestTelemetry]


@dataclass(frozen=True, slots=True)
class FleetPage:
    """``count``: the devices matching the query in all; ``marker``: where the next page starts
    (None after the last)."""

    devices: tuple[DeviceLatest, ...]
    count: int
    marker: str | None


def status_of(raw: str | None) -> DeviceStatus | None:
    if not raw:
        return None
    try:
        return DeviceStatus(raw.upper())
    except ValueError:
        raise InvalidInput("status must be ONLINE or OFFLINE") from None


def fleet_query(project_id: str, keys: list[str] | None, *, product_id: str | None, status: str | None,
                limit: int, marker: str | None) -> FleetQuery:
    if not keys:
        raise InvalidInput("keys is required: one key or several, separated by commas")
    unique = tuple(dict.fromkeys(keys))
    if len(unique) > MAX_KEYS:
        raise InvalidInput(f"keys names more than {MAX_KEYS} keys")
    return FleetQuery(project_id, unique, product_id or None, status_of(status), limit, marker or None)
