"""``iot-gateway bench ota`` end to end, tiny: the figures' shape, every download verified.

No throughput or memory target is asserted: they depend on the machine."""

from __future__ import annotations

from tests.bench_support import bench


async def test_bench_ota() -> None:
    status, report, log = await bench("ota", "--devices", "20", "--package-bytes", "200000", "--chunk-bytes", "10000",
                                      "--duration", "60", "--json")
    assert status == 0, log
    assert report["scenario"] == "ota" and report["unit"] == "chunks"
    checks = report["checks"]
    assert checks["downloads verified"] is True and checks["baseline downloads verified"] is True
    assert checks["gateway errors"] == {} and checks["gateway: chunks/s"] > 0 and checks["gateway: MB/s"] > 0
    assert checks["gateway RSS highest while downloading (MB)"] >= checks["gateway RSS before (MB)"] > 0
    assert "gateway / bare asyncio responder, chunks/s" in report["ratios"]
    assert [t["name"] for t in report["targets"]] == ["bounded memory"]
