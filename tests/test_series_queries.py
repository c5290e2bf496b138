"""Several keys' history through the management API, raw and aggregated, checked against
aggregates computed here, independently, from the raw points sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from tests.management_client import Management, assert_error
from tests.support import new_tenant

BERLIN = ZoneInfo("Europe/Berlin")
# Sunday 26 March 2023 is 23 hours long in Berlin, Sunday 29 October 25 hours.
SPRING = int(datetime(2023, 3, 24, 22, 0, tzinfo=UTC).timestamp() * 1000)  # Saturday 25th, 00:00 in Berlin
AUTUMN = int(datetime(2023, 10, 27, 22, 0, tzinfo=UTC).timestamp() * 1000)  # Saturday 28th, 00:00 in Berlin
STEP = 37 * 60_000
HOUR = 3_600_000
DAY = 24 * HOUR
COUNT = 150  # about 92 hours a series


def values_at(n: int) -> dict[str, object]:
    """Reading n: a long, a double, a key of mixed numbers and booleans, a string, and a key that
    is numeric except for one string."""
    mixed: object = [n, n + 0.25, n % 2 == 0][n % 3]
    return {"level": n * 3 - 200, "temperature": round(20 + n * 0.1, 2), "mixed": mixed,
            "state": f"s{n % 7}", "noisy": n if n != 60 else "error"}


def readings(t0: int) -> list[dict[str, object]]:
    return [{"ts": t0 + n * STEP, "values": values_at(n)} for n in range(COUNT)]


def raw(t0: int, key: str) -> list[tuple[int, object]]:
    return [(r["ts"], r["values"][key]) for r in readings(t0)]  # type: ignore[index]


async def send(http, device: dict, t0: int) -> None:
    token = device["auth_info"]["access_token"]
    async with http.post(f"/api/v1/{token}/telemetry", data=orjson.dumps(readings(t0))) as resp:
        assert resp.status == 200


@pytest.fixture
async def device(api: Management, http) -> dict:
    device = await api.create_device("series-meter")
    await send(http, device, SPRING)
    await send(http, device, AUTUMN)
    return device


# --- the reference: ThingsBoard's buckets and aggregates, written out plainly ---------------

def fixed_edges(start: int, end: int, interval: int) -> list[tuple[int, int]]:
    end = max(start + 1, end)
    edges, lo = [], start
    while lo < end:
        edges.append((lo, min(lo + interval, end)))
        lo += interval
    return edges


def local_day_edges(start: int, end: int, zone: ZoneInfo, days: int = 1) -> list[tuple[int, int]]:
    end = max(start + 1, end)
    edges, lo = [], start
    while lo < end:
        local = datetime.fromtimestamp(lo / 1000, zone)
        midnight = datetime.combine(local.date() + timedelta(days=days), datetime.min.time(), zone)
        hi = min(int(midnight.timestamp() * 1000), end)
        edges.append((lo, hi))
        lo = hi
    return edges


def month_edges(start: int, end: int, zone: ZoneInfo) -> list[tuple[int, int]]:
    edges, lo = [], start
    while lo < end:
        local = datetime.fromtimestamp(lo / 1000, zone)
        first = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=zone)
        hi = min(int(first.timestamp() * 1000), end)
        edges.append((lo, hi))
        lo = hi
    return edges


def number(v: object) -> int | float:
    return int(v) if isinstance(v, bool) else v  # type: ignore[return-value]


def typed(vs: list[object], result: int | float) -> int | float:
    """ThingsBoard's result type: a double when a double was among the values, else a long."""
    return float(result) if any(isinstance(v, float) for v in vs) else result


AGGREGATES: dict[str, Callable[[list[object]], object]] = {
    "AVG": lambda vs: sum(number(v) for v in vs) / len(vs),
    "SUM": lambda vs: typed(vs, sum(number(v) for v in vs)),
    "MIN": lambda vs: typed(vs, min(number(v) for v in vs)),
    "MAX": lambda vs: typed(vs, max(number(v) for v in vs)),
    "COUNT": len,
}


def expected(points: list[tuple[int, object]], edges: list[tuple[int, int]], agg: str) -> list[tuple[int, object]]:
    out = []
    for lo, hi in edges:
        inside = [v for ts, v in points if lo <= ts < hi]
        if inside:
            out.append((lo + (hi - lo) // 2, AGGREGATES[agg](inside)))
    return out


def assert_same(answer: list[dict[str, object]], want: list[tuple[int, object]]) -> None:
    got = [(p["ts"], p["value"]) for p in answer]
    assert [ts for ts, _ in got] == [ts for ts, _ in want]
    for (_, value), (_, reference) in zip(got, want):
        if isinstance(reference, float):
            assert isinstance(value, float) and value == pytest.approx(reference, rel=1e-12), (value, reference)
        else:
            # A long stays a long: 3, not 3.0.
            assert type(value) is type(reference) and value == reference, (value, reference)


async def series(api: Management, device: dict, **params: object):
    return await api.call("GET", f"/devices/{device['device_id']}/telemetry", params={
        k: str(v) for k, v in params.items()})


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("agg", ["AVG", "SUM", "MIN", "MAX", "COUNT"])
@pytest.mark.parametrize("interval", [HOUR, 5 * HOUR + 7, DAY])
async def test_fixed_intervals_match_the_reference(api: Management, device: dict, agg: str, interval: int) -> None:
    # The range starts off the points' grid and ends inside a bucket: the last bucket is cut short.
    start, end = SPRING + 11 * 60_000, SPRING + 80 * HOUR + 13
    keys = ["level", "temperature", "mixed"]
    reply = await series(api, device, keys=",".join(keys), start_time=start, end_time=end, agg=agg,
                         interval=interval, order="ASC")
    assert reply.status == 200, reply
    assert list(reply.body) == keys
    for key in keys:
        want = expected(raw(SPRING, key), fixed_edges(start, end, interval), agg)
        assert want and len(want) < len(raw(SPRING, key))
        assert_same(reply.body[key], want)


async def test_bucket_edges_are_half_open(api: Management, device: dict) -> None:
    # Buckets as long as the points' step, starting on a point: each holds exactly that point,
    # the point at a bucket's end belongs to the next one, and the end time is excluded.
    start, end = SPRING + 10 * STEP, SPRING + 20 * STEP
    reply = await series(api, device, keys="level", start_time=start, end_time=end, agg="COUNT",
                         interval=STEP, order="ASC")
    assert [(p["ts"], p["value"]) for p in reply.body["level"]] == [
        (start + k * STEP + STEP // 2, 1) for k in range(10)]
    assert_same(reply.body["level"], expected(raw(SPRING, "level"), fixed_edges(start, end, STEP), "COUNT"))


async def test_empty_buckets_are_left_out(api: Management, device: dict) -> None:
    # From a day before the first point to an hour after the last of the spring series: the
    # first 24 hourly buckets and those between the two series hold nothing.
    start, end = SPRING - DAY, SPRING + COUNT * STEP + HOUR
    reply = await series(api, device, keys="level,never-sent", start_time=start, end_time=end, agg="MAX",
                         interval=HOUR)
    want = expected(raw(SPRING, "level"), fixed_edges(start, end, HOUR), "MAX")
    assert len(want) < len(fixed_edges(start, end, HOUR)) - 24
    assert_same(reply.body["level"], list(reversed(want)))  # newest first by default
    assert reply.body["never-sent"] == []


@pytest.mark.parametrize(("t0", "hours"), [(SPRING, 23), (AUTUMN, 25)])
@pytest.mark.parametrize("agg", ["AVG", "COUNT", "SUM"])
async def test_local_days_across_dst(api: Management, device: dict, t0: int, hours: int, agg: str) -> None:
    start, end = t0 + 3 * HOUR, t0 + 3 * DAY
    edges = local_day_edges(start, end, BERLIN)
    assert edges[1][1] - edges[1][0] == hours * HOUR  # the Sunday
    reply = await series(api, device, keys="level,mixed", start_time=start, end_time=end, agg=agg,
                         interval=DAY, time_zone="Europe/Berlin", order="ASC")
    assert reply.status == 200, reply
    for key in ("level", "mixed"):
        assert_same(reply.body[key], expected(raw(t0, key), edges, agg))
    # Without a time zone, days are 24 hours from the start time, as ThingsBoard cuts them.
    utc = await series(api, device, keys="level", start_time=start, end_time=end, agg=agg, interval=DAY,
                       order="ASC")
    assert_same(utc.body["level"], expected(raw(t0, "level"), fixed_edges(start, end, DAY), agg))


async def test_two_day_buckets_and_months_in_a_time_zone(api: Management, device: dict) -> None:
    start, end = SPRING, AUTUMN + 4 * DAY
    two_days = await series(api, device, keys="level", start_time=start, end_time=end, agg="SUM",
                            interval=2 * DAY, time_zone="Europe/Berlin", order="ASC")
    assert_same(two_days.body["level"],
                expected(raw(SPRING, "level") + raw(AUTUMN, "level"), local_day_edges(start, end, BERLIN, 2), "SUM"))
    months = await series(api, device, keys="temperature", start_time=start, end_time=end, agg="AVG",
                          interval_type="MONTH", time_zone="Europe/Berlin", order="ASC")
    edges = month_edges(start, end, BERLIN)
    assert len(edges) == 8
    assert_same(months.body["temperature"],
                expected(raw(SPRING, "temperature") + raw(AUTUMN, "temperature"), edges, "AVG"))


async def test_count_takes_every_type_and_others_refuse_strings(api: Management, device: dict) -> None:
    start, end = SPRING, SPRING + COUNT * STEP
    count = await series(api, device, keys="state,noisy", start_time=start, end_time=end, agg="COUNT",
                         interval=DAY, order="ASC")
    for key in ("state", "noisy"):
        assert_same(count.body[key], expected(raw(SPRING, key), fixed_edges(start, end, DAY), "COUNT"))
    for agg in ("AVG", "SUM", "MIN", "MAX"):
        reply = await series(api, device, keys="level,state", start_time=start, end_time=end, agg=agg, interval=DAY)
        assert_error(reply, 400, "IOTDA.000006")
        assert "'state'" in reply.body["error_msg"] and "COUNT takes every type" in reply.body["error_msg"]
    # One string among numbers: only its bucket is refused, a range without it is answered.
    n60 = SPRING + 60 * STEP
    assert_error(await series(api, device, keys="noisy", start_time=n60 - HOUR, end_time=n60 + HOUR, agg="AVG",
                              interval=HOUR), 400, "IOTDA.000006")
    ok = await series(api, device, keys="noisy", start_time=n60 + 1, end_time=n60 + DAY, agg="AVG", interval=HOUR,
                      order="ASC")
    assert_same(ok.body["noisy"], expected(raw(SPRING, "noisy"), fixed_edges(n60 + 1, n60 + DAY, HOUR), "AVG"))


async def test_raw_values_of_several_keys(api: Management, device: dict) -> None:
    start, end = SPRING + 5 * STEP, SPRING + 9 * STEP
    reply = await series(api, device, keys="state,mixed,level", start_time=start, end_time=end, limit=3)
    assert list(reply.body) == ["state", "mixed", "level"]
    for key in ("state", "mixed", "level"):
        inside = [(ts, v) for ts, v in raw(SPRING, key) if start <= ts < end]
        assert [(p["ts"], p["value"]) for p in reply.body[key]] == list(reversed(inside))[:3]
    ascending = await series(api, device, keys="mixed", start_time=start, end_time=end, order="ASC")
    assert [(p["ts"], p["value"]) for p in ascending.body["mixed"]] == [
        (ts, v) for ts, v in raw(SPRING, "mixed") if start <= ts < end]


@pytest.mark.parametrize(("params", "code", "message"), [
    ({}, "IOTDA.000006", "keys is required: one key or several, separated by commas"),
    ({"keys": "a", "agg": "MEDIAN"}, "IOTDA.000006", "agg must be one of NONE, AVG, MIN, MAX, SUM, COUNT"),
    ({"keys": "a", "agg": "AVG", "start_time": 0}, "IOTDA.000009",
     "start_time and end_time are required when agg is not NONE"),
    ({"keys": "a", "agg": "AVG", "start_time": 0, "end_time": 10}, "IOTDA.000006",
     "interval (milliseconds, at least 1) is required when agg is not NONE"),
    ({"keys": "a", "agg": "AVG", "start_time": 0, "end_time": 10 * DAY, "interval": 1}, "IOTDA.000006",
     "interval 1 cuts the time range into more than 50000 buckets"),
    ({"keys": "a", "agg": "AVG", "start_time": 0, "end_time": DAY, "interval": HOUR, "time_zone": "Mars/Olympus"},
     "IOTDA.000006", "time_zone 'Mars/Olympus' is not a known IANA time zone"),
    ({"keys": "a", "agg": "AVG", "start_time": 0, "end_time": DAY, "interval_type": "FORTNIGHT"}, "IOTDA.000006",
     "interval_type must be one of MILLISECONDS, WEEK, WEEK_ISO, MONTH, QUARTER"),
    ({"keys": "a", "start_time": 5, "end_time": 4}, "IOTDA.000010", "start_time 5 is after end_time 4"),
    ({"keys": "a", "limit": 0}, "IOTDA.000017", "limit must be an integer from 1 to 10000"),
    ({"keys": ",".join(f"k{n}" for n in range(101))}, "IOTDA.000006", "keys names more than 100 keys"),
])
async def test_invalid_queries(api: Management, device: dict, params: dict, code: str, message: str) -> None:
    assert_error(await series(api, device, **params), 400, code, message)


async def test_another_projects_token_sees_nothing(management, api: Management, gateway, device: dict) -> None:
    other = Management(management, await new_tenant(gateway.services))
    assert_error(await series(other, device, keys="level"), 404, "IOTDA.000005")
