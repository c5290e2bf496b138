"""The bench's query scenario: the time-series and fleet queries of the management API, timed on a
loaded data set (docs/queries.md).

query
    The gateway with its HTTP and management listeners on. --fleet-devices devices provisioned
    over HTTP; the first --devices of them send --days days of 1-minute data of 3 keys (100 x 30:
    13 M rows) through the device API, the others one reading of the 3 keys, all within
    --load-seconds (what was loaded by then is what is measured, and reported). Then, one after
    the other, --queries times each: one week of hourly averages of one key of a loaded device
    (GET .../devices/{id}/telemetry?agg=AVG&interval=3600000), and a 1,000-device page of the
    latest values of the 3 keys (GET .../telemetry/latest). The baseline, in the same run: the same
    two answers read straight from PostgreSQL through the SQL views (one asyncpg connection, no
    HTTP, no JSON), so the ratio is what the API adds to what the database takes.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import asyncpg
import orjson

from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import (
    BenchError, Workspace, admin, context, gateway_server, new_tenant, progress, provision_devices,
)
from fleetgate.simulator.processes import free_port
from fleetgate.simulator.report import BenchReport, Ratio, Target

MINUTE = 60_000
HOUR = 60 * MINUTE
WEEK = 7 * 24 * HOUR
KEYS = ("temperature", "humidity", "pressure")
PAGE = 1_000
_READINGS_A_REQUEST = 333  # 999 data points: under max_datapoints_per_message's default of 1,000
_CONCURRENT_REQUESTS = 16
TARGET_WEEK_MS = 50.0
TARGET_PAGE_MS = 200.0

_WEEK_SQL = """SELECT (ts_ms - $3) / 3600000 AS hour, avg(value_number) FROM iot.telemetry
               WHERE device_id = $1 AND key = $2 AND ts_ms >= $3 AND ts_ms < $4 GROUP BY 1 ORDER BY 1"""
_PAGE_SQL = """SELECT device_id, key, ts_ms, value_text FROM iot.latest
               WHERE device_id = ANY($1::text[]) AND key = ANY($2::text[])"""


async def query(options: BenchOptions, space: Workspace) -> BenchReport:
    if options.devices > options.fleet_devices:
        raise BenchError("--devices (devices with history) must be at most --fleet-devices")
    tenant = await new_tenant(space)
    token = await admin(space, "create-token", "--project", tenant.project_id)
    async with gateway_server(space, listeners=("management",), management_port=free_port()) as server:
        loaded_tokens = await provision_devices(server, tenant, options.devices)
        others = await provision_devices(server, tenant, options.fleet_devices - options.devices) \
            if options.fleet_devices > options.devices else ()
        end = int(time.time() * 1000) // HOUR * HOUR
        start = end - options.days * 24 * HOUR
        loaded = await _load(server.url, loaded_tokens, others, start, end, options.load_seconds)
        connection = await asyncpg.connect(space.database_url)
        try:
            ids = [r["device_id"] for r in await connection.fetch(
                "SELECT device_id FROM iot.devices WHERE project_id = $1 ORDER BY created_ms, device_id",
                tenant.project_id)]
            histories = await _with_history(connection, ids[: options.devices * 2], start)
            async with aiohttp.ClientSession(server.urls["management"], headers={"X-Auth-Token": token}) as api:
                base = f"/v5/iot/{tenant.project_id}"
                weeks = [(random.choice(histories), start + random.randrange(max(1, (loaded.until - start - WEEK)
                                                                                  // HOUR + 1)) * HOUR)
                         for _ in range(options.queries)]
                progress(f"{options.queries} week-of-hourly-averages queries, through the API then through SQL")
                week_api = await _timed([lambda d=d, s=s: _week_api(api, base, d, s) for d, s in weeks])
                week_sql = await _timed([lambda d=d, s=s: connection.fetch(_WEEK_SQL, d, KEYS[0], s, s + WEEK)
                                         for d, s in weeks])
                pages = [ids[i:i + PAGE] for i in range(0, len(ids), PAGE)]
                rounds = max(1, options.queries // max(1, len(pages)))
                progress(f"{rounds} rounds of {len(pages)} pages of {PAGE} devices' latest values")
                page_api = await _timed([lambda: _fleet_api(api, base, len(ids)) for _ in range(rounds)],
                                        per_call=len(pages))
                page_sql = await _timed([lambda p=p: connection.fetch(_PAGE_SQL, p, list(KEYS))
                                         for _ in range(rounds) for p in pages])
        finally:
            await connection.close()
    return _report(options, space, loaded, len(ids), (week_api, week_sql, page_api, page_sql))


class _Loaded:
    def __init__(self) -> None:
        self.rows = 0
        self.requests = 0
        self.refused = 0
        self.start = 0
        self.until = 0  # the loaded devices' data reach this ts (exclusive)
        self.seconds = 0.0
        self.complete = True


async def _load(url: str, loaded: Sequence[str], others: Sequence[str], start: int, end: int,
                seconds: float) -> _Loaded:
    """The data set, through the device API, in time order (every loaded device's oldest minutes
    first), stopped at the deadline."""
    result = _Loaded()
    result.start = result.until = start
    deadline = time.monotonic() + seconds
    began = time.monotonic()
    total = len(loaded) * (end - start) // MINUTE * len(KEYS) + len(others) * len(KEYS)
    progress(f"loading {total:,} rows through the device API (at most {seconds:g} s)")
    queue: asyncio.Queue[tuple[str, list[dict[str, Any]]] | None] = asyncio.Queue(maxsize=_CONCURRENT_REQUESTS * 4)

    async def post(session: aiohttp.ClientSession) -> None:
        while (item := await queue.get()) is not None:
            device, readings = item
            body = orjson.dumps(readings)
            while True:
                async with session.post(f"/api/v1/{device}/telemetry", data=body) as resp:
                    await resp.read()
                    if resp.status == 200:
                        break
                    if resp.status != 503:
                        raise BenchError(f"telemetry refused with {resp.status} while loading")
                    result.refused += 1
                await asyncio.sleep(0.05)  # pushed back: the queue is full, as a device would wait
            result.requests += 1
            result.rows += sum(len(r["values"]) for r in readings)

    async with aiohttp.ClientSession(url) as session:
        posters = [asyncio.create_task(post(session)) for _ in range(_CONCURRENT_REQUESTS)]
        try:
            for device in others:
                await queue.put((device, [{"ts": end - MINUTE, "values": _values(end - MINUTE)}]))
            for chunk_start in range(start, end, _READINGS_A_REQUEST * MINUTE):
                if time.monotonic() > deadline:
                    result.complete = False
                    break
                chunk_end = min(end, chunk_start + _READINGS_A_REQUEST * MINUTE)
                readings = [{"ts": ts, "values": _values(ts)} for ts in range(chunk_start, chunk_end, MINUTE)]
                for device in loaded:
                    await queue.put((device, readings))
                result.until = chunk_end
        finally:
            for _ in posters:
                await queue.put(None)
            await asyncio.gather(*posters)
    result.seconds = time.monotonic() - began
    progress(f"loaded {result.rows:,} rows in {result.seconds:.0f} s ({result.rows / result.seconds:,.0f} rows/s), "
             f"{result.refused} pushbacks{'' if result.complete else '; stopped at the time cap'}")
    return result


def _values(ts: int) -> dict[str, float]:
    minute = ts // MINUTE
    return {"temperature": 20 + (minute % 600) / 60, "humidity": 40 + minute % 17, "pressure": 1000.5 + minute % 7}


async def _with_history(connection: asyncpg.Connection, candidates: list[str], start: int) -> list[str]:
    """The devices (of the first created) that hold the loaded history."""
    found = [d for d in candidates if await connection.fetchval(
        "SELECT 1 FROM iot.telemetry WHERE device_id = $1 AND key = $2 AND ts_ms = $3", d, KEYS[0], start)]
    if not found:
        raise BenchError("no device holds the loaded history")
    return found


async def _week_api(api: aiohttp.ClientSession, base: str, device: str, start: int) -> None:
    params = {"keys": KEYS[0], "agg": "AVG", "interval": str(HOUR), "start_time": str(start),
              "end_time": str(start + WEEK), "order": "ASC"}
    async with api.get(f"{base}/devices/{device}/telemetry", params=params) as resp:
        body = await resp.json()
        if resp.status != 200 or not body.get(KEYS[0]):
            raise BenchError(f"the week query failed: {resp.status} {str(body)[:200]}")


async def _fleet_api(api: aiohttp.ClientSession, base: str, devices: int) -> list[float]:
    """Every page of the fleet, each page's time in ms."""
    times, marker, seen = [], None, 0
    while True:
        params = {"keys": ",".join(KEYS), "limit": str(PAGE), **({"marker": marker} if marker else {})}
        began = time.perf_counter()
        async with api.get(f"{base}/telemetry/latest", params=params) as resp:
            body = await resp.json()
        times.append((time.perf_counter() - began) * 1000)
        if resp.status != 200:
            raise BenchError(f"the fleet query failed: {resp.status} {str(body)[:200]}")
        seen += len(body["devices"])
        marker = body["page"]["marker"]
        if marker is None:
            break
    if seen != devices:
        raise BenchError(f"the fleet query listed {seen} of {devices} devices")
    return times


async def _timed(calls: list[Callable[[], Awaitable[Any]]], per_call: int = 0) -> list[float]:
    """Milliseconds of each call, one at a time; a call returning its own list of times (per_call
    pages) counts those instead."""
    times: list[float] = []
    for call in calls:
        began = time.perf_counter()
        inner = await call()
        if per_call:
            times.extend(inner)
        else:
            times.append((time.perf_counter() - began) * 1000)
    return times


def _p(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _report(options: BenchOptions, space: Workspace, loaded: _Loaded, devices: int,
            times: tuple[list[float], list[float], list[float], list[float]]) -> BenchReport:
    week_api, week_sql, page_api, page_sql = times
    checks: dict[str, object] = {
        "rows loaded": loaded.rows,
        "load seconds": round(loaded.seconds, 1),
        "load rows/s": round(loaded.rows / loaded.seconds) if loaded.seconds else 0,
        "load pushbacks (503)": loaded.refused,
        "whole data set loaded": loaded.complete,
        "days loaded": round((loaded.until - loaded.start) / (24 * HOUR), 2),
        "fleet devices": devices,
    }
    for name, values in (("week, API", week_api), ("week, SQL", week_sql), ("1,000-device page, API", page_api),
                         ("1,000-device page, SQL", page_sql)):
        checks[f"{name}: p50 ms"] = round(statistics.median(values), 1)
        checks[f"{name}: p95 ms"] = round(_p(values, 0.95), 1)
        checks[f"{name}: samples"] = len(values)
    return BenchReport(
        scenario="query",
        title=(f"iot-gateway bench query: {options.devices} devices x {len(KEYS)} keys x {options.days} days of "
               f"1-minute data, {devices} devices in the fleet"),
        context=context(options, space, days=options.days, fleet_devices=options.fleet_devices,
                        queries=options.queries, load_seconds=options.load_seconds),
        runs=(),
        ratios=(Ratio("week of hourly averages, p95: API / SQL views", _p(week_api, 0.95) / _p(week_sql, 0.95),
                      percent=False),
                Ratio("1,000-device page of latest values, p95: API / SQL views",
                      _p(page_api, 0.95) / _p(page_sql, 0.95), percent=False)),
        targets=(Target("one week of hourly averages of one key of one device", f"p95 < {TARGET_WEEK_MS:g} ms",
                        f"{_p(week_api, 0.95):.1f} ms", _p(week_api, 0.95) < TARGET_WEEK_MS),
                 Target("latest values of 3 keys, a page of 1,000 devices", f"p95 < {TARGET_PAGE_MS:g} ms",
                        f"{_p(page_api, 0.95):.1f} ms", _p(page_api, 0.95) < TARGET_PAGE_MS)),
        checks=checks,
        notes=("the machine is shared: figures are a reading of the day, the ratios to the SQL views measured in "
               "the same run are what carries over",),
        unit="queries",
    )
