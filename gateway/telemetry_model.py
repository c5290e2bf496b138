"""Frozen types of the data devices report: typed key-values, telemetry and attribute messages,
and their queries."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class AttributeScope(enum.StrEnum):
    CLIENT = "CLIENT_SCOPE"
    SHARED = "SHARED_SCOPE"
    SERVER = "SERVER_SCOPE"


class ValueType(enum.IntEnum):
    BOOLEAN = 1
    LONG = 2
    DOUBLE = 3
    STRING = 4
    JSON = 5


class KeyValue(NamedTuple):
    """One typed data point. A named tuple, unlike the other types here: one is made for
    every data point the gateway takes in, and a tuple is made in half the time of a
    frozen dataclass (whose __init__ sets each field through object.__setattr__)."""

    key: str
    type: ValueType
    value: Any


@dataclass(frozen=True, slots=True)
class Reading:
    """One timestamped set of key-values: ThingsBoard's ``{"ts":…, "values":{…}}``."""

    ts: int
    values: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class TelemetryMessage:
    device_id: str
    readings: tuple[Reading, ...]
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        # Counted once: the queue, the batcher and the metrics all ask.
        rows = 0
        for reading in self.readings:
            rows += len(reading.values)
        object.__setattr__(self, "rows", rows)


@dataclass(frozen=True, slots=True)
class AttributeMessage:
    device_id: str
    scope: AttributeScope
    ts: int
    values: tuple[KeyValue, ...]

    @property
    def rows(self) -> int:
        return len(self.values)


@dataclass(frozen=True, slots=True)
class AttributeValue:
    key: str
    value: Any
    last_update_ts: int


@dataclass(frozen=True, slots=True)
class TimeseriesPoint:
    ts: int
    value: Any


@dataclass(frozen=True, slots=True)
class LatestTelemetry:
    key: str
    ts: int
    value: Any


class SortOrder(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


@dataclass(frozen=True, slots=True)
class TimeseriesQuery:
    """A key's values with ``start_ts <= ts <= end_ts``, at most ``limit``, in ``order`` of ts."""

    key: str
    start_ts: int
    end_ts: int
    limit: int
    order: SortOrder = SortOrder.DESC
