"""Telemetry queries through the management API: latest values and a key's history."""

from __future__ import annotations

import orjson
import pytest

from tests.management_client import Management, assert_error
from tests.support import new_tenant

T0 = 1_700_000_000_000


@pytest.fixture
async def device(api: Management, http) -> dict:
    device = await api.create_device("meter")
    readings = [{"ts": T0 + n * 1000, "values": {"temperature": 20 + n, "state": f"s{n}"}} for n in range(5)]
    readings.append({"ts": T0 + 2500, "values": {"flag": True, "config": {"a": [1, 2]}}})
    async with http.post(f"/api/v1/{device['auth_info']['access_token']}/telemetry",
                         data=orjson.dumps(readings)) as resp:
        assert resp.status == 200
    return device


def series(device: dict, key: str) -> str:
    return f"/devices/{device['device_id']}/telemetry/{key}"


def points(reply) -> list[tuple[int, object]]:
    return [(v["ts"], v["value"]) for v in reply.body["values"]]


async def test_latest(api: Management, device: dict) -> None:
    reply = await api.call("GET", f"/devices/{device['device_id']}/telemetry/latest")
    assert reply.status == 200
    assert reply.body == {"telemetry": [
        {"key": "config", "ts": T0 + 2500, "value": {"a": [1, 2]}},
        {"key": "flag", "ts": T0 + 2500, "value": True},
        {"key": "state", "ts": T0 + 4000, "value": "s4"},
        {"key": "temperature", "ts": T0 + 4000, "value": 24},
    ]}
    some = await api.call("GET", f"/devices/{device['device_id']}/telemetry/latest",
                          params={"keys": "temperature,unknown"})
    assert some.body == {"telemetry": [{"key": "temperature", "ts": T0 + 4000, "value": 24}]}


async def test_history_newest_first_by_default(api: Management, device: dict) -> None:
    reply = await api.call("GET", series(device, "temperature"))
    assert reply.status == 200 and reply.body["key"] == "temperature"
    assert points(reply) == [(T0 + n * 1000, 20 + n) for n in reversed(range(5))]


async def test_history_range_order_and_limit(api: Management, device: dict) -> None:
    window = {"start_time": T0 + 1000, "end_time": T0 + 3000}
    ascending = await api.call("GET", series(device, "temperature"), params={**window, "order": "ASC"})
    assert points(ascending) == [(T0 + 1000, 21), (T0 + 2000, 22), (T0 + 3000, 23)]
    limited = await api.call("GET", series(device, "temperature"), params={**window, "order": "DESC", "limit": 2})
    assert points(limited) == [(T0 + 3000, 23), (T0 + 2000, 22)]
    first = await api.call("GET", series(device, "state"), params={"order": "ASC", "limit": 1})
    assert points(first) == [(T0, "s0")]
    instant = await api.call("GET", series(device, "state"), params={"start_time": T0, "end_time": T0})
    assert points(instant) == [(T0, "s0")]


async def test_unknown_key_has_no_values(api: Management, device: dict, gateway) -> None:
    reply = await api.call("GET", series(device, "never-sent"))
    assert reply.status == 200 and reply.body == {"key": "never-sent", "values": []}
    # Asking does not register the key.
    assert await gateway.services.pool.fetchval("SELECT count(*) FROM key_dictionary WHERE key = 'never-sent'") == 0


@pytest.mark.parametrize(("params", "code", "message"), [
    ({"start_time": T0 + 1, "end_time": T0}, "IOTDA.000010", f"start_time {T0 + 1} is after end_time {T0}"),
    ({"start_time": "yesterday"}, "IOTDA.000009", "start_time must be an integer from 0 to 9223372036854775807"),
    ({"end_time": -1}, "IOTDA.000009", "end_time must be an integer from 0 to 9223372036854775807"),
    ({"limit": 0}, "IOTDA.000017", "limit must be an integer from 1 to 10000"),
    ({"limit": 10_001}, "IOTDA.000017", "limit must be an integer from 1 to 10000"),
    ({"order": "random"}, "IOTDA.000006", "order must be ASC or DESC"),
])
async def test_invalid_query(api: Management, device: dict, params: dict, code: str, message: str) -> None:
    assert_error(await api.call("GET", series(device, "temperature"), params=params), 400, code, message)


async def test_another_projects_device_is_not_found(management, api: Management, http, gateway, device: dict) -> None:
    other = Management(management, await new_tenant(gateway.services))
    for path in (f"/devices/{device['device_id']}/telemetry/latest", series(device, "temperature")):
        assert_error(await other.call("GET", path), 404, "IOTDA.000005")
