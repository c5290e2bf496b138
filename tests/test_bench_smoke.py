"""``iot-gateway bench`` end to end, tiny: the figures' shape and no failed request.

No timing is asserted: the figures depend on the machine. Each run starts its
own embedded PostgreSQL, gateway and baseline, as a user's would.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.bench_support import LOAD as _LOAD
from tests.bench_support import assert_run_shape, bench


async def test_bench_http() -> None:
    status, report, log = await bench("http", "--devices", "20", *_LOAD)
    assert status == 0, log
    assert report["scenario"] == "http"
    assert set(report["runs"]) == {"gateway_max", "gateway_rate", "baseline_max", "baseline_rate"}
    for run in report["runs"].values():
        assert_run_shape(run)
        assert run["connections"] == 20
        assert run["datapoints_per_request"] == 3
    rate = report["runs"]["gateway_rate"]["target_rate"]
    assert rate == report["runs"]["baseline_rate"]["target_rate"] > 0
    assert "gateway / bare aiohttp, max throughput" in report["ratios"]
    # Each server's own CPU over each window, a request.
    assert all(run["server_cpu_us_per_request"] >= 0 for run in report["runs"].values())
    assert {t["name"] for t in report["targets"]} == {"throughput", "against the baseline", "latency"}
    # Every acknowledged data point is in the database (one device's requests never share a millisecond here).
    assert report["checks"]["rows in ts_kv"] == report["checks"]["data points acknowledged"]
    assert report["error_count"] == 0


async def test_bench_provision() -> None:
    status, report, log = await bench("provision", "--connections", "5", *_LOAD)
    assert status == 0, log
    run = report["runs"]["provision"]
    assert_run_shape(run)
    assert run["connections"] == 5
    assert report["checks"]["count verified"] is True
    assert report["checks"]["devices in the database"] == run["total_ok"] > 0
    assert report["error_count"] == 0


async def test_unknown_scenario_is_a_usage_error() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", "bench", "carrier-pigeon",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 2
    assert b"invalid choice" in err


async def test_bench_mqtt_against_the_gateway() -> None:
    status, report, log = await bench("mqtt", "--devices", "20", *_LOAD)
    assert status == 0, log
    assert report["scenario"] == "mqtt"
    assert {"gateway_max", "gateway_rate"} <= set(report["runs"])
    for name in ("gateway_max", "gateway_rate"):
        assert_run_shape(report["runs"][name])
    # PUBACK means stored: exactly one row per acknowledged data point.
    assert report["checks"]["rows in ts_kv"] == report["checks"]["data points acknowledged"]
    assert report["error_count"] == 0, log


async def test_bench_idle_connections_against_the_gateway() -> None:
    status, report, log = await bench("idle-connections", "--connections", "200", "--duration", "1", "--json")
    assert status == 0, log
    assert report["error_count"] == 0, log
    assert report["runs"]["gateway_idle"]["connections"] == 200
    assert report["checks"]["gateway connections held"] == 200
    assert 0 < report["checks"]["gateway PSS holding them, KiB"] <= report["checks"]["gateway RSS holding them, KiB"]
    assert report["checks"]["connections verified"] is True


async def test_bench_soak() -> None:
    status, report, log = await bench("soak", "--devices", "10", "--duration", "3", "--warmup", "0.2", "--json")
    assert status == 0, log
    assert set(report["runs"]) == {"gateway_max", "soak"}
    assert report["context"]["rate"] == pytest.approx(report["runs"]["gateway_max"]["requests_per_s"] / 2, rel=1e-3)
    readings = report["context"]["rss_kib"]
    assert len(readings) >= 3 and readings[0][0] == 0  # at the start, every 0.1 s, at the end
    assert report["checks"]["RSS KiB at the end"] == readings[-1][1] > 0
    assert report["checks"]["rows verified"] is True
    assert [t["name"] for t in report["targets"]] == ["memory"]
