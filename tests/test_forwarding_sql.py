"""The where/select subset (fleetgate.core.forwarding_sql): what it matches, what it refuses."""

from __future__ import annotations

import pytest

from fleetgate.core.errors import InvalidInput
from fleetgate.core.forwarding_sql import parse_select, parse_where

NOTE = {
    "resource": "device.property", "event": "report",
    "notify_data": {
        "header": {"device_id": "d1", "product_id": "p1", "node_id": "n-1"},
        "body": {"services": [{"service_id": "telemetry", "properties": {"temperature": 40, "mode": "eco",
                                                                           "on": True}}]},
    },
}
T = "notify_data.body.services[0].properties.temperature"


@pytest.mark.parametrize(("where", "matches"), [
    (f"{T} > 38", True),
    (f"{T} > 40", False),
    (f"{T} >= 40 AND notify_data.header.device_id = 'd1'", True),
    (f"{T} < 0 OR notify_data.header.product_id = 'p1'", True),
    (f"NOT ({T} = 40)", False),
    (f"38 < {T}", True),
    (f"{T} <> 40", False),
    ("notify_data.body.services[0].properties.mode = 'eco'", True),
    ("notify_data.body.services[0].properties.on = true", True),
    ("notify_data.body.services[0].properties.humidity > 1", False),  # missing: unknown, not a match
    ("NOT notify_data.body.services[0].properties.humidity > 1", False),
    ("notify_data.body.services[0].properties.humidity IS NULL", True),
    (f"{T} IS NOT NULL", True),
    ("notify_data.body.services[0].properties.mode > 3", False),  # a string against a number: unknown
    ("WHERE notify_data.header.node_id = 'n-1'", True),
    ("notify_data.header.\"node_id\" = 'n-1'", True),
    ("notify_data.body.services[1].properties.temperature > 0", False),
])
def test_where_matches(where: str, matches: bool) -> None:
    assert parse_where(where).matches(NOTE) is matches


@pytest.mark.parametrize("where", [
    "", "temperature >", "concat(a, b) = 'x'", "a + 1 > 2", "a IN (1, 2)", "a LIKE 'x%'", "a = b",
    "a = 1 AND", "(a = 1", "a = 1 ; DROP TABLE x", "a[x] = 1", "x" * 501,
])
def test_where_outside_the_subset_is_refused(where: str) -> None:
    with pytest.raises(InvalidInput):
        parse_where(where)


def test_select() -> None:
    assert parse_select("*") is None
    selected = parse_select("SELECT notify_data.header.device_id AS device_id, notify_data.body.services[0].properties, "
                            "'v1' AS version")
    assert selected is not None
    assert selected.apply(NOTE) == {
        "device_id": "d1", "notify_data.body.services[0].properties": NOTE["notify_data"]["body"]["services"][0][
            "properties"], "version": "v1"}
    for bad in ("'v1'", "a AS", "a, *", "count(a) AS n", "a AS " + "n" * 33):
        with pytest.raises(InvalidInput):
            parse_select(bad)
