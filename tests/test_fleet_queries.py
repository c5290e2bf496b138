"""Fleet queries: the latest values of chosen keys for every device of a project or product."""

from __future__ import annotations

import secrets
import time

import orjson
import pytest

from tests.management_client import Management, assert_error
from tests.support import new_tenant

T0 = 1_700_000_000_000


async def send(http, device: dict, readings: list[dict]) -> None:
    async with http.post(f"/api/v1/{device['auth_info']['access_token']}/telemetry",
                         data=orjson.dumps(readings)) as resp:
        assert resp.status == 200


@pytest.fixture
async def fleet(api: Management, http, gateway) -> dict:
    """Seven devices of two products: n holds temperature n (a later point wins over the earlier
    one whatever the order they were sent in), every other one a state, the last one nothing."""
    other = await api.call("POST", "/products", json={"name": "p-" + secrets.token_hex(3)})
    devices = []
    for n in range(7):
        product = other.body["product_id"] if n >= 4 else api.tenant.product_id
        device = await api.create_device(f"fleet-{n}", product)
        if n < 6:
            await send(http, device, [{"ts": T0 + 10, "values": {"temperature": n}},
                                      {"ts": T0, "values": {"temperature": -1, "humidity": 50 + n}}])
        if n % 2 == 0 and n < 6:
            await send(http, device, [{"ts": T0 + 5, "values": {"state": f"s{n}"}}])
        devices.append(device)
    # Devices 1 and 4 are online: a request's lease that has not run out, as presence writes it.
    await gateway.services.pool.execute(
        "UPDATE devices SET online_until = $2 WHERE id = ANY($1::text[])",
        [devices[1]["device_id"], devices[4]["device_id"]], int(time.time() * 1000) + 600_000)
    return {"devices": devices, "other_product": other.body["product_id"]}


def expected(fleet: dict, n: int, keys: list[str]) -> dict:
    device = fleet["devices"][n]
    values = {"temperature": {"ts": T0 + 10, "value": n}, "humidity": {"ts": T0, "value": 50 + n}}
    if n % 2 == 0:
        values["state"] = {"ts": T0 + 5, "value": f"s{n}"}
    return {
        "device_id": device["device_id"], "device_name": f"fleet-{n}",
        "product_id": fleet["other_product"] if n >= 4 else device["product_id"],
        "status": "ONLINE" if n in (1, 4) else "OFFLINE",
        "telemetry": {k: v for k, v in values.items() if k in keys} if n < 6 else {},
    }


def by_id(fleet: dict, ns) -> list[dict]:
    """Devices n in IoTDA's order: ids descending."""
    return sorted(ns, key=lambda n: fleet["devices"][n]["device_id"], reverse=True)


async def test_every_device_of_the_project_paged(api: Management, fleet: dict) -> None:
    keys = ["temperature", "state", "never-sent"]
    seen, marker = [], None
    while True:
        reply = await api.call("GET", "/telemetry/latest", params={
            "keys": ",".join(keys), "limit": 3, **({"marker": marker} if marker else {})})
        assert reply.status == 200, reply
        assert reply.body["page"]["count"] == 7
        seen += reply.body["devices"]
        marker = reply.body["page"]["marker"]
        if marker is None:
            break
    assert len(seen) == 7
    assert seen == [expected(fleet, n, keys) for n in by_id(fleet, range(7))]


async def test_filtered_by_product_and_status(api: Management, fleet: dict) -> None:
    keys = ["humidity"]
    product = await api.call("GET", "/telemetry/latest", params={"keys": "humidity",
                                                                 "product_id": fleet["other_product"]})
    assert product.body == {"devices": [expected(fleet, n, keys) for n in by_id(fleet, [4, 5, 6])],
                            "page": {"count": 3, "marker": None}}
    online = await api.call("GET", "/telemetry/latest", params={"keys": "humidity", "status": "ONLINE"})
    assert online.body["devices"] == [expected(fleet, n, keys) for n in by_id(fleet, [1, 4])]
    offline = await api.call("GET", "/telemetry/latest", params={
        "keys": "humidity", "status": "OFFLINE", "product_id": fleet["other_product"]})
    assert offline.body["devices"] == [expected(fleet, n, keys) for n in by_id(fleet, [5, 6])]


@pytest.mark.parametrize(("params", "code", "message"), [
    ({}, "IOTDA.000006", "keys is required: one key or several, separated by commas"),
    ({"keys": "a", "status": "ASLEEP"}, "IOTDA.000006", "status must be ONLINE or OFFLINE"),
    ({"keys": "a", "limit": 1001}, "IOTDA.000017", "limit must be an integer from 1 to 1000"),
])
async def test_invalid_fleet_queries(api: Management, params: dict, code: str, message: str) -> None:
    assert_error(await api.call("GET", "/telemetry/latest", params=params), 400, code, message)


async def test_another_project_sees_none_of_it(management, api: Management, gateway, fleet: dict) -> None:
    other = Management(management, await new_tenant(gateway.services))
    reply = await other.call("GET", "/telemetry/latest", params={"keys": "temperature"})
    assert reply.body == {"devices": [], "page": {"count": 0, "marker": None}}
    assert_error(await other.call("GET", "/telemetry/latest", params={"keys": "temperature"},
                                  project_id=api.tenant.project_id), 403, "IOTDA.000004")
