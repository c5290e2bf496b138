"""What operators ask of stored telemetry: the latest values, and a key's values over time."""

from __future__ import annotations

from collections.abc import Sequence

from fleetgate.core.devices import require_device
from fleetgate.core.errors import InvalidInput, InvalidTimeRange
from fleetgate.core.model import LatestTelemetry, SortOrder, TimeseriesPoint, TimeseriesQuery
from fleetgate.core.ports import DeviceLookup, TelemetryQueryStore

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


def order_of(raw: str | None) -> SortOrder:
    """The sort order of a history query: newest first unless asked otherwise."""
    if raw is None or raw == "":
        return SortOrder.DESC
    try:
        return SortOrder(raw)
    except ValueError:
        raise InvalidInput("order must be ASC or DESC") from None


class TelemetryQueryService:
    def __init__(self, devices: DeviceLookup, store: TelemetryQueryStore) -> None:
        self._devices = devices
        self._store = store

    async def latest(self, project_id: str, device_id: str, keys: Sequence[str] | None) -> list[LatestTelemetry]:
        """Each key's latest value (every key's when ``keys`` is None), ordered by key."""
        await require_device(self._devices, project_id, device_id)
        return await self._store.latest(device_id, keys)

    async def history(self, project_id: str, device_id: str, query: TimeseriesQuery) -> list[TimeseriesPoint]:
        if query.start_ts > query.end_ts:
            raise InvalidTimeRange(f"start_time {query.start_ts} is after end_time {query.end_ts}")
        await require_device(self._devices, project_id, device_id)
        return await self._store.history(device_id, query)
