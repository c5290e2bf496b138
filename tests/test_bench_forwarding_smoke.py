"""``iot-gateway bench mqtt --forwarding`` end to end, tiny: delivery in a forwarder process of its
own by default, in the gateway process with ``--forwarding-in-process``; every data point stored
with the rule on received. No timing is asserted: the figures depend on the machine."""

from __future__ import annotations

import pytest

from tests.bench_support import LOAD, bench


@pytest.mark.parametrize(("flags", "delivery"), [((), "forwarder process"),
                                                 (("--forwarding-in-process",), "gateway process")])
async def test_bench_forwarding(flags: tuple[str, ...], delivery: str) -> None:
    status, report, log = await bench("mqtt", "--forwarding", *flags, "--devices", "10", *LOAD)
    assert status == 0, log
    assert report["context"]["forwarding_delivery"] == delivery
    assert set(report["runs"]) == {"without_forwarding_max_1", "without_forwarding_max_2", "forwarding_max_1",
                                   "forwarding_max_2", "forwarding_rate"}
    checks = report["checks"]
    assert checks["every stored data point received"] is True
    assert checks["data points received"] >= checks["data points stored with the rule active"] > 0
    assert {t["name"] for t in report["targets"]} == {"throughput", "lag"}
