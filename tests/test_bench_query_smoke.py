"""``iot-gateway bench query`` end to end, tiny: the figures' shape, every device listed, the loaded
rows all there. No timing is asserted: the figures depend on the machine."""

from __future__ import annotations

from tests.bench_support import bench


async def test_bench_query() -> None:
    status, report, log = await bench("query", "--devices", "3", "--days", "1", "--fleet-devices", "30",
                                      "--queries", "10", "--json")
    assert status == 0, log
    assert report["scenario"] == "query"
    checks = report["checks"]
    assert checks["rows loaded"] == 3 * 24 * 60 * 3 + 27 * 3
    assert checks["whole data set loaded"] is True and checks["days loaded"] == 1.0
    assert checks["fleet devices"] == 30
    for name in ("week, API", "week, SQL", "1,000-device page, API", "1,000-device page, SQL"):
        assert checks[f"{name}: samples"] == 10
        assert 0 < checks[f"{name}: p50 ms"] <= checks[f"{name}: p95 ms"]
    assert set(report["ratios"]) == {"week of hourly averages, p95: API / SQL views",
                                     "1,000-device page of latest values, p95: API / SQL views"}
    assert len(report["targets"]) == 2
    assert report["error_count"] == 0
