"""``iot-gateway bench coap`` end to end, tiny: the figures' shape, the memory run, no failed request.

No timing or memory target is asserted: they depend on the machine."""

from __future__ import annotations

from tests.bench_support import LOAD as _LOAD, assert_run_shape, bench


async def test_bench_coap() -> None:
    status, report, log = await bench("coap", "--devices", "20", "--requests", "2000", "--memory-seconds", "60", *_LOAD)
    assert status == 0, log
    assert report["scenario"] == "coap"
    assert set(report["runs"]) == {"gateway_max", "gateway_rate", "baseline_max", "baseline_rate", "gateway_memory"}
    for run in report["runs"].values():
        assert_run_shape(run)
        assert run["connections"] == 20  # one UDP socket a device
        assert run["datapoints_per_request"] == 3
    assert report["runs"]["gateway_memory"]["total_ok"] >= 2000
    for name in ("gateway_max", "gateway_rate", "baseline_max", "baseline_rate"):
        assert report["runs"][name]["server_cpu_us_per_request"] >= 0  # the server's own CPU, a request
    # The open loop at half the maximum, the same rate against the baseline.
    rate = report["runs"]["gateway_rate"]["target_rate"]
    assert rate == report["runs"]["baseline_rate"]["target_rate"] > 0
    checks = report["checks"]
    assert checks["rows in ts_kv"] == checks["data points acknowledged"] > 0
    assert checks["gateway RSS after it (MB)"] > 0 and checks["gateway RSS before the memory run (MB)"] > 0
    assert "gateway / bare aiocoap, max throughput" in report["ratios"]
    assert "gateway / bare aiocoap, p99 latency at the same rate" in report["ratios"]
    assert {t["name"] for t in report["targets"]} == {"against the baseline", "latency", "memory"}
