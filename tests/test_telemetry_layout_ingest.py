"""A fresh installation started with telemetry_layout = "month" stores what devices send in
month partitions of one level, and answers for it (storage/telemetry_layout.py)."""

from __future__ import annotations

import aiohttp
import orjson

from fleetgate.storage.telemetry_layout import Layout, current_layout
from tests.conftest import listener_url
from tests.layout_support import fresh, partition_tree  # noqa: F401 (a fixture)
from tests.management_client import Management
from tests.support import gateway_settings, new_tenant, running_gateway

T0 = 1_700_000_000_000  # November 2023
T1 = T0 + 40 * 86_400_000  # December 2023


async def test_a_month_database_stores_and_acknowledges_http_telemetry(fresh, tmp_path) -> None:
    settings = gateway_settings(str(tmp_path), telemetry_layout="month")
    async with running_gateway(fresh.url, settings) as gateway:
        assert await current_layout(fresh.pool) is Layout.MONTH
        tenant = await new_tenant(gateway.services)
        async with aiohttp.ClientSession(listener_url(gateway, "management")) as management, \
                aiohttp.ClientSession(listener_url(gateway, "http")) as http:
            api = Management(management, tenant)
            device = await api.create_device("month-meter")
            path = f"/api/v1/{device['auth_info']['access_token']}/telemetry"
            readings = [{"ts": ts, "values": {"temperature": 20 + n, "state": f"s{n}"}}
                        for n, ts in enumerate((T0, T0 + 1000, T1))]
            async with http.post(path, data=orjson.dumps(readings)) as resp:
                assert resp.status == 200
            async with http.post(path, data=b'{"temperature": ') as resp:
                assert resp.status == 400

            # Acknowledged means stored: the rows are there, in months of one level.
            assert await fresh.pool.fetchval("SELECT count(*) FROM ts_kv WHERE device_id = $1",
                                             device["device_id"]) == 6
            assert await partition_tree(fresh.pool) == {"ts_kv_2023_11": 1, "ts_kv_2023_12": 1}
            latest = await api.call("GET", f"/devices/{device['device_id']}/telemetry/latest")
            assert latest.status == 200 and latest.body == {"telemetry": [
                {"key": "state", "ts": T1, "value": "s2"}, {"key": "temperature", "ts": T1, "value": 22}]}
            history = await api.call("GET", f"/devices/{device['device_id']}/telemetry/temperature",
                                     params={"order": "ASC", "start_time": T0, "end_time": T1})
            assert [(v["ts"], v["value"]) for v in history.body["values"]] == [(T0, 20), (T0 + 1000, 21), (T1, 22)]
            assert await fresh.pool.fetchval("SELECT count(*) FROM iot.telemetry WHERE device_id = $1",
                                             device["device_id"]) == 6
