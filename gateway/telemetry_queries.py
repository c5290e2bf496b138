"""What operators ask of stored telemetry: the latest values, and keys' values over time, raw or aggregated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fleetgate.core.devices import require_device
from fleetgate.core.errors import InvalidInput, InvalidTimeRange, NotFound
from fleetgate.core.fleet import FleetPage, FleetQuery
from fleetgate.core.ports import DeviceLookup, FleetStore, SeriesStore, TelemetryQueryStore
from fleetgate.core.telemetry_model import LatestTelemetry, SortOrder, TimeseriesPoint, TimeseriesQuery
from fleetgate.core.timeseries import Aggregation, SeriesQuery

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


class SeriesQueries:
    def __init__(self, store: SeriesStore, fleet: FleetStore) -> None:
        self._store = store
        self._fleet = fleet

    async def fleet_latest(self, query: FleetQuery) -> FleetPage:
        """The latest values of the query's keys for a page of the project's devices."""
        return await self._fleet.fleet_latest(query)

    async def series(
        self, project_id: str, device_id: str, query: SeriesQuery
    ) -> Mapping[str, Sequence[TimeseriesPoint]]:
        """Every asked key (in the order asked) with its points, none when it has no values."""
        if query.start > query.end:
            raise InvalidTimeRange(f"start_time {query.start} is after end_time {query.end}")
        # The store checks the device's project in the statement that finds its partitions: a
        # foreign device's id reveals nothing, at no extra query.
        if query.agg is Aggregation.NONE:
            found = await self._store.raw_series(project_id, device_id, query)
            if found is None:
                raise NotFound(f"Device {device_id} does not exist")
            return {key: found.get(key, ()) for key in query.keys}
        assert query.buckets is not None
        buckets = await self._store.aggregated_series(project_id, device_id, query)
        if buckets is None:
            raise NotFound(f"Device {device_id} does not exist")
        answer: dict[str, list[TimeseriesPoint]] = {key: [] for key in query.keys}
        for bucket in buckets:
            if bucket.non_numeric and query.agg is not Aggregation.COUNT:
                raise InvalidInput(
                    f"{query.agg.value} takes numbers and booleans only: key {bucket.key!r} holds "
                    f"strings or JSON in [{', '.join(map(str, query.buckets.span(bucket.index)))}); "
                    "COUNT takes every type")
            answer[bucket.key].append(TimeseriesPoint(query.buckets.ts(bucket.index), bucket.value))
        if query.order is SortOrder.DESC:
            for points in answer.values():
                points.reverse()
        return answer
