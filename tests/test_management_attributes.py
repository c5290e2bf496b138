"""Attributes through the management API: shared and server scopes written, every scope read."""

from __future__ import annotations

import orjson
import pytest

from tests.management_client import Management, assert_error
from tests.support import new_tenant


@pytest.fixture
async def device(api: Management) -> dict:
    return await api.create_device("attr-device")


def path_of(device: dict) -> str:
    return f"/devices/{device['device_id']}/attributes"


async def device_reads(http, token: str, query: str) -> dict:
    async with http.get(f"/api/v1/{token}/attributes?{query}") as resp:
        assert resp.status == 200
        return orjson.loads(await resp.read())


async def test_shared_attributes_reach_the_device(api: Management, http, device: dict) -> None:
    written = await api.call("POST", path_of(device), params={"scope": "SHARED_SCOPE"},
                             json={"interval": 30, "mode": "eco", "ratio": "0.5", "limits": {"max": 3},
                                   "on": True, "skipped": None})
    assert written.status == 200
    read = await api.call("GET", path_of(device), params={"scope": "SHARED_SCOPE"})
    assert read.status == 200
    values = {a["key"]: a["value"] for a in read.body["attributes"]}
    assert values == {"interval": 30, "mode": "eco", "ratio": 0.5, "limits": {"max": 3}, "on": True}
    assert all(set(a) == {"key", "value", "last_update_ts"} and a["last_update_ts"] > 0
               for a in read.body["attributes"])

    token = device["auth_info"]["access_token"]
    assert await device_reads(http, token, "sharedKeys=interval,mode") == {"shared": {"interval": 30, "mode": "eco"}}


async def test_server_attributes_stay_on_the_server(api: Management, http, device: dict) -> None:
    assert (await api.call("POST", path_of(device), params={"scope": "SERVER_SCOPE"},
                           json={"site": "north"})).status == 200
    read = await api.call("GET", path_of(device), params={"scope": "SERVER_SCOPE", "keys": "site,absent"})
    assert [(a["key"], a["value"]) for a in read.body["attributes"]] == [("site", "north")]
    assert await device_reads(http, device["auth_info"]["access_token"], "sharedKeys=site") == {}


async def test_client_attributes_are_read_only(api: Management, http, device: dict) -> None:
    async with http.post(f"/api/v1/{device['auth_info']['access_token']}/attributes", json={"fw": "1.2"}) as resp:
        assert resp.status == 200
    read = await api.call("GET", path_of(device), params={"scope": "CLIENT_SCOPE"})
    assert [(a["key"], a["value"]) for a in read.body["attributes"]] == [("fw", 1.2)]
    message = "CLIENT_SCOPE attributes are reported by the device and are read-only here"
    assert_error(await api.call("POST", path_of(device), params={"scope": "CLIENT_SCOPE"}, json={"fw": "2"}),
                 400, "IOTDA.000006", message)
    assert_error(await api.call("DELETE", path_of(device), params={"scope": "CLIENT_SCOPE", "keys": "fw"}),
                 400, "IOTDA.000006", message)


async def test_delete(api: Management, device: dict) -> None:
    await api.call("POST", path_of(device), params={"scope": "SHARED_SCOPE"}, json={"a": 1, "b": 2, "c": 3})
    deleted = await api.call("DELETE", path_of(device), params={"scope": "SHARED_SCOPE", "keys": "a, c,missing"})
    assert deleted.status == 204
    read = await api.call("GET", path_of(device), params={"scope": "SHARED_SCOPE"})
    assert [a["key"] for a in read.body["attributes"]] == ["b"]
    assert_error(await api.call("DELETE", path_of(device), params={"scope": "SHARED_SCOPE"}), 400, "IOTDA.000006",
                 "keys is required: the comma-separated attribute keys to delete")


@pytest.mark.parametrize("params", [{}, {"scope": "shared"}, {"scope": "ALL"}])
async def test_scope_is_required_and_checked(api: Management, device: dict, params: dict) -> None:
    message = "scope must be one of CLIENT_SCOPE, SHARED_SCOPE, SERVER_SCOPE"
    assert_error(await api.call("GET", path_of(device), params=params), 400, "IOTDA.000006", message)
    assert_error(await api.call("POST", path_of(device), params=params, json={"a": 1}), 400, "IOTDA.000006", message)


@pytest.mark.parametrize(("raw", "code"), [
    (b"[1]", "IOTDA.000008"), (b"nope", "IOTDA.000008"), (b'{"": 1}', "IOTDA.000008"),
    (orjson.dumps({"k" * 256: 1}), "IOTDA.000008"),
])
async def test_invalid_values(api: Management, device: dict, raw: bytes, code: str) -> None:
    reply = await api.call("POST", path_of(device), params={"scope": "SERVER_SCOPE"}, data=raw)
    assert_error(reply, 400, code)


async def test_another_projects_device_is_not_found(management, api: Management, http, gateway) -> None:
    other = Management(management, await new_tenant(gateway.services))
    foreign = await other.create_device("foreign")
    await other.call("POST", path_of(foreign), params={"scope": "SHARED_SCOPE"}, json={"secret": 1})
    for method, params in (("GET", {"scope": "SHARED_SCOPE"}), ("POST", {"scope": "SHARED_SCOPE"}),
                           ("DELETE", {"scope": "SHARED_SCOPE", "keys": "secret"})):
        reply = await api.call(method, path_of(foreign), params=params, json={"secret": 2})
        assert_error(reply, 404, "IOTDA.000005", f"Device {foreign['device_id']} does not exist")
    read = await other.call("GET", path_of(foreign), params={"scope": "SHARED_SCOPE"})
    assert [(a["key"], a["value"]) for a in read.body["attributes"]] == [("secret", 1)]
