"""Fleet queries (fleetgate.core.fleet): a page of a project's devices from the iot.devices view
(migration 0013), then each device's newest row of each key asked, one probe of ts_kv's primary
key a device and key."""

from __future__ import annotations

import asyncpg

from fleetgate.core.fleet import DeviceLatest, FleetPage, FleetQuery
from fleetgate.core.presence_model import DeviceStatus
from fleetgate.core.telemetry_model import LatestTelemetry
from fleetgate.storage.errors import translated
from fleetgate.storage.telemetry import column_value

_MATCHING = """FROM iot.devices WHERE project_id = $1 AND ($2::text IS NULL OR product_id = $2)
               AND ($3::text IS NULL OR status = $3)"""

_PAGE = f"""SELECT device_id, device_name, product_id, status {_MATCHING}
            AND ($4::text IS NULL OR device_id < $4) ORDER BY device_id DESC LIMIT $5"""

_COUNT = f"SELECT count(*) {_MATCHING}"

# The project number named as a parameter: the planner prunes ts_kv to the project's partitions.
_LATEST = """SELECT d.device_id, k.key, l.ts, l.bool_v, l.long_v, l.dbl_v, l.str_v, l.json_v
             FROM unnest($2::text[]) AS d(device_id)
             CROSS JOIN key_dictionary k
             CROSS JOIN LATERAL (
                 SELECT ts, bool_v, long_v, dbl_v, str_v, json_v FROM ts_kv t
                 WHERE t.project_no = $1 AND t.device_id = d.device_id COLLATE "C" AND t.key = k.key_id
                 ORDER BY t.ts DESC LIMIT 1) l
             WHERE k.key = ANY($3::text[])"""


class FleetStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def fleet_latest(self, query: FleetQuery) -> FleetPage:
        status = query.status.value if query.status else None
        with translated():
            async with self._pool.acquire() as conn:
                devices = await conn.fetch(_PAGE, query.project_id, query.product_id, status, query.marker,
                                           query.limit)
                count = await conn.fetchval(_COUNT, query.project_id, query.product_id, status)
                project_no = await conn.fetchval("SELECT no FROM projects WHERE id = $1", query.project_id)
                values = await conn.fetch(_LATEST, project_no, [d["device_id"] for d in devices],
                                          list(query.keys)) if devices else []
        found: dict[str, dict[str, LatestTelemetry]] = {}
        for r in values:
            found.setdefault(r["device_id"], {})[r["key"]] = LatestTelemetry(r["key"], r["ts"], column_value(r))
        page = tuple(DeviceLatest(d["device_id"], d["device_name"], d["product_id"], DeviceStatus(d["status"]),
                                  found.get(d["device_id"], {})) for d in devices)
        marker = devices[-1]["device_id"] if len(devices) == query.limit else None
        return FleetPage(page, count, marker)
