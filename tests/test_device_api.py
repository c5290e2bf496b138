"""ThingsBoard's HTTP device API (spec 3.3, 3.4) against the running gateway and its PostgreSQL.

The gateway acknowledges after the commit (ack = "stored"), so a 200 means the
rows can be read back at once.
"""

from __future__ import annotations

import secrets
from typing import Any

import aiohttp
import orjson
import pytest

from fleetgate.app import Gateway
from fleetgate.core.telemetry_model import AttributeScope, KeyValue, ValueType
from tests.support import ProvisionedDevice, Tenant, provision_device

_TS_ROWS = """SELECT k.key, t.ts, t.bool_v, t.long_v, t.dbl_v, t.str_v, t.json_v
              FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key
              WHERE t.device_id = $1 ORDER BY k.key, t.ts"""
_ATTRIBUTE_ROWS = """SELECT key, bool_v, long_v, dbl_v, str_v, json_v FROM attribute_kv
                     WHERE device_id = $1 AND scope = $2 ORDER BY key"""


@pytest.fixture
async def device(http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant) -> ProvisionedDevice:
    return await provision_device(http, gateway, tenant)


async def post(http: aiohttp.ClientSession, path: str, body: bytes | str) -> tuple[int, bytes]:
    async with http.post(path, data=body.encode() if isinstance(body, str) else body) as resp:
        return resp.status, await resp.read()


async def get(http: aiohttp.ClientSession, path: str, params: Any = None) -> tuple[int, bytes]:
    async with http.get(path, params=params) as resp:
        return resp.status, await resp.read()


async def ts_rows(gateway: Gateway, device: ProvisionedDevice) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await gateway.services.pool.fetch(_TS_ROWS, device.id)]


async def attribute_rows(gateway: Gateway, device: ProvisionedDevice, scope: str = "CLIENT_SCOPE") -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await gateway.services.pool.fetch(_ATTRIBUTE_ROWS, device.id, scope)]


# --- authentication ---------------------------------------------------------------------------

ENDPOINTS = [("POST", "telemetry"), ("POST", "attributes"), ("GET", "attributes")]


@pytest.mark.parametrize(("method", "feature"), ENDPOINTS)
async def test_unknown_token_is_401_with_an_empty_body(http, method, feature):
    path = f"/api/v1/unknown-{secrets.token_hex(8)}/{feature}"
    async with http.request(method, path, data=b'{"a":1}' if method == "POST" else None) as resp:
        assert (resp.status, await resp.read()) == (401, b"")


@pytest.mark.parametrize("feature", ["telemetry", "attributes"])
async def test_the_token_is_checked_before_the_body(http, gateway, feature):
    """Neither an oversized nor a malformed body changes the answer to an unknown token."""
    token = "unknown-" + secrets.token_hex(8)
    huge = b'{"a":"' + b"x" * (4 * gateway.settings.max_payload_bytes) + b'"}'
    assert await post(http, f"/api/v1/{token}/{feature}", huge) == (401, b"")
    assert await post(http, f"/api/v1/{token}/{feature}", b"{not json") == (401, b"")


async def test_a_provision_token_authenticates_only_its_own_device(http, gateway, tenant):
    first, second = await provision_device(http, gateway, tenant), await provision_device(http, gateway, tenant)
    assert await post(http, f"/api/v1/{first.token}/telemetry", '{"who":1}') == (200, b"")
    assert await post(http, f"/api/v1/{second.token}/telemetry", '{"who":2}') == (200, b"")
    assert [r[3] for r in await ts_rows(gateway, first)] == [1]
    assert [r[3] for r in await ts_rows(gateway, second)] == [2]


# --- malformed and edge payloads --------------------------------------------------------------


@pytest.mark.parametrize("feature", ["telemetry", "attributes"])
@pytest.mark.parametrize("body", [b"{", b"{a:1}", b"", b"\xff", b"temperature=25"])
async def test_malformed_json_is_400_with_a_message(http, gateway, device, feature, body):
    status, text = await post(http, f"/api/v1/{device.token}/{feature}", body)
    assert status == 400
    assert text.startswith(b"Invalid JSON")
    assert await ts_rows(gateway, device) == [] and await attribute_rows(gateway, device) == []


async def test_timestamp_in_seconds_is_400_and_nothing_is_stored(http, gateway, device):
    body = '[{"ts":1634712287000,"values":{"a":1}},{"ts":1634712287,"values":{"a":2}}]'
    status, text = await post(http, f"/api/v1/{device.token}/telemetry", body)
    assert (status, text) == (
        400, b"ts 1634712287 looks like seconds; timestamps are Unix milliseconds (for example 1634712287000)",
    )
    assert await ts_rows(gateway, device) == []


@pytest.mark.parametrize("body", ["{}", "[]", "[{}]", '{"a":null}'])
async def test_empty_telemetry_is_accepted(http, gateway, device, body):
    assert await post(http, f"/api/v1/{device.token}/telemetry", body) == (200, b"")
    assert await ts_rows(gateway, device) == []


async def test_empty_attributes_are_accepted(http, gateway, device):
    assert await post(http, f"/api/v1/{device.token}/attributes", "{}") == (200, b"")
    assert await attribute_rows(gateway, device) == []


@pytest.mark.parametrize("feature", ["telemetry", "attributes"])
async def test_body_over_the_limit_is_413(http, gateway, device, feature):
    body = b'{"a":"' + b"x" * gateway.settings.max_payload_bytes + b'"}'
    status, _ = await post(http, f"/api/v1/{device.token}/{feature}", body)
    assert status == 413
    assert await ts_rows(gateway, device) == [] and await attribute_rows(gateway, device) == []


async def test_body_just_under_the_limit_is_stored(http, gateway, device):
    prefix, suffix = b'{"a":"', b'"}'
    filler = gateway.settings.max_payload_bytes - len(prefix) - len(suffix)
    body = prefix + b"x" * filler + suffix
    assert len(body) == gateway.settings.max_payload_bytes
    assert await post(http, f"/api/v1/{device.token}/attributes", body) == (200, b"")
    assert await attribute_rows(gateway, device) == [("a", None, None, None, "x" * filler, None)]


@pytest.mark.parametrize("body", ['[{"a":1}]', "[]", "1", '"a"'])
async def test_attributes_must_be_an_object(http, gateway, device, body):
    status, text = await post(http, f"/api/v1/{device.token}/attributes", body)
    assert status == 400 and text.startswith(b"Attributes must be a JSON object")
    assert await attribute_rows(gateway, device) == []


@pytest.mark.parametrize("body", ["1", '"x"', "[1]", '{"ts":1634712287000,"values":[1]}'])
async def test_telemetry_grammar_errors_are_400(http, gateway, device, body):
    status, text = await post(http, f"/api/v1/{device.token}/telemetry", body)
    assert status == 400 and text.startswith(b"Can't parse value")


# --- value typing, read back from the database ------------------------------------------------

TYPED_BODY = orjson.dumps({
    "b": True, "l": 73, "d": 42.0, "s": "value1", "j": {"someNumber": 42, "someArray": [1, 2, 3]},
    "ns": "42", "nd": "1.5", "big": 9223372036854775808, "n": None,
})
# (key, bool_v, long_v, dbl_v, str_v, json_v)
TYPED_ROWS = [
    ("b", True, None, None, None, None),
    ("big", None, None, None, "9223372036854775808", None),
    ("d", None, None, 42.0, None, None),
    ("j", None, None, None, None, {"someNumber": 42, "someArray": [1, 2, 3]}),
    ("l", None, 73, None, None, None),
    ("nd", None, None, 1.5, None, None),
    ("ns", None, 42, None, None, None),
    ("s", None, None, None, "value1", None),
]


async def test_telemetry_values_land_in_typed_columns(http, gateway, device):
    assert await post(http, f"/api/v1/{device.token}/telemetry", TYPED_BODY) == (200, b"")
    rows = await ts_rows(gateway, device)
    assert [(r[0], *r[2:]) for r in rows] == TYPED_ROWS
    assert len({r[1] for r in rows}) == 1  # one server timestamp for the flat object


async def test_attribute_values_land_in_typed_columns(http, gateway, device):
    assert await post(http, f"/api/v1/{device.token}/attributes", TYPED_BODY) == (200, b"")
    assert await attribute_rows(gateway, device) == TYPED_ROWS


async def test_timestamped_array_is_stored_at_the_device_timestamps(http, gateway, device):
    body = '[{"ts":1634712287000,"values":{"t":26,"h":87}},{"ts":1634712588000,"values":{"t":27}},{"t":28}]'
    assert await post(http, f"/api/v1/{device.token}/telemetry", body) == (200, b"")
    rows = [(r[0], r[1], r[3]) for r in await ts_rows(gateway, device)]
    assert rows[:3] == [("h", 1634712287000, 87), ("t", 1634712287000, 26), ("t", 1634712588000, 27)]
    assert rows[3][0::2] == ("t", 28) and rows[3][1] > 1634712588000


async def test_latest_values_follow_the_newest_timestamp(http, gateway, device):
    for body in ('{"ts":1634712588000,"values":{"t":2}}', '{"ts":1634712287000,"values":{"t":1}}'):
        assert await post(http, f"/api/v1/{device.token}/telemetry", body) == (200, b"")
    latest = await gateway.services.telemetry_queries.latest(device.id, None)
    assert [(v.key, v.ts, v.value) for v in latest] == [("t", 1634712588000, 2)]


async def test_nul_characters_are_removed_from_string_values(http, gateway, device):
    """ThingsBoard's sql.remove_null_chars (default true): PostgreSQL text cannot hold U+0000."""
    body = '{"s":"a\\u0000b","j":{"k\\u0000":"x\\u0000y"}}'
    assert await post(http, f"/api/v1/{device.token}/telemetry", body) == (200, b"")
    assert await post(http, f"/api/v1/{device.token}/attributes", body) == (200, b"")
    expected = [("j", None, None, None, None, {"k": "xy"}), ("s", None, None, None, "ab", None)]
    assert [(r[0], *r[2:]) for r in await ts_rows(gateway, device)] == expected
    assert await attribute_rows(gateway, device) == expected


async def test_a_key_with_a_nul_character_is_400(http, gateway, device):
    status, _ = await post(http, f"/api/v1/{device.token}/telemetry", '{"a\\u0000":1}')
    assert status == 400
    assert await ts_rows(gateway, device) == []


# --- attribute requests -----------------------------------------------------------------------


@pytest.fixture
async def attributed(http, gateway, device) -> ProvisionedDevice:
    """A device with client attributes a, b, c and shared attributes s1, s2."""
    assert await post(http, f"/api/v1/{device.token}/attributes", '{"a":1,"b":"x","c":{"k":[1]}}') == (200, b"")
    await gateway.services.attributes.write_attributes(
        device.id, AttributeScope.SHARED, 1634712287000,
        [KeyValue("s1", ValueType.DOUBLE, 1.5), KeyValue("s2", ValueType.BOOLEAN, False)],
    )
    return device


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (None, b'{"client":{"a":1,"b":"x","c":{"k":[1]}},"shared":{"s1":1.5,"s2":false}}'),
        ({"clientKeys": "a,c"}, b'{"client":{"a":1,"c":{"k":[1]}}}'),
        ({"sharedKeys": "s2"}, b'{"shared":{"s2":false}}'),
        ({"clientKeys": "b", "sharedKeys": "s1,s2"}, b'{"client":{"b":"x"},"shared":{"s1":1.5,"s2":false}}'),
        ({"client_keys": "a,c"}, b'{"client":{"a":1,"c":{"k":[1]}}}'),
        ({"shared_keys": "s2"}, b'{"shared":{"s2":false}}'),
        ({"client_keys": "b", "shared_keys": "s1"}, b'{"client":{"b":"x"},"shared":{"s1":1.5}}'),
        ({"clientKeys": " a , ,b "}, b'{"client":{"a":1,"b":"x"}}'),
        # Empty sections are omitted, down to an empty object.
        ({"clientKeys": "zzz"}, b"{}"),
        ({"clientKeys": "a", "sharedKeys": "zzz"}, b'{"client":{"a":1}}'),
        ({"sharedKeys": "a"}, b"{}"),
        # No keys named at all (even empty lists) means everything.
        ({"clientKeys": "", "sharedKeys": ""},
         b'{"client":{"a":1,"b":"x","c":{"k":[1]}},"shared":{"s1":1.5,"s2":false}}'),
        # Repeated parameters, as requests sends a list: Spring joins them with commas.
        ([("clientKeys", "a"), ("clientKeys", "b")], b'{"client":{"a":1,"b":"x"}}'),
        ([("client_keys", "a"), ("client_keys", "c"), ("shared_keys", "s1")],
         b'{"client":{"a":1,"c":{"k":[1]}},"shared":{"s1":1.5}}'),
    ],
)
async def test_attribute_request(http, attributed, params, expected):
    status, body = await get(http, f"/api/v1/{attributed.token}/attributes", params)
    assert (status, body) == (200, expected)


async def test_attribute_request_of_a_device_without_attributes_is_an_empty_object(http, device):
    assert await get(http, f"/api/v1/{device.token}/attributes") == (200, b"{}")


async def test_attribute_request_does_not_show_server_attributes(http, gateway, device):
    """provisionState is a server-scope attribute: never part of the device's view."""
    assert await gateway.services.pool.fetchval(
        "SELECT str_v FROM attribute_kv WHERE device_id = $1 AND scope = 'SERVER_SCOPE' AND key = 'provisionState'",
        device.id,
    ) == "provisioned"
    assert await get(http, f"/api/v1/{device.token}/attributes") == (200, b"{}")
