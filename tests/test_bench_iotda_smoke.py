"""``bench mqtt --iotda``: simulated IoTDA devices (simulator.iotda) connect and report as the
contract says, and the scenario runs against the gateway. Tiny loads; no timing is asserted."""

from __future__ import annotations

import hashlib
import hmac
import re

import orjson

from fleetgate.simulator.mqtt_load import devices_of, template_of
from fleetgate.simulator.workloads import MqttTelemetrySpec
from tests.bench_support import LOAD, assert_run_shape, bench


def test_a_simulated_device_connects_and_reports_in_iotdas_form() -> None:
    spec = MqttTelemetrySpec(("prod_a", "prod_b"), iotda_secret="s3cret_value")
    assert MqttTelemetrySpec.from_json(orjson.loads(orjson.dumps(spec.to_json()))) == spec
    first, _ = devices_of(spec)
    match = re.fullmatch(r"prod_a_0_1_(\d{10})", first.client_id)
    assert match is not None and first.username == "prod_a"
    assert first.password == hmac.new(match.group(1).encode(), b"s3cret_value", hashlib.sha256).hexdigest()
    templates = template_of(spec)
    assert isinstance(templates, list) and len(templates) == 2
    assert spec.datapoints == 3


async def test_bench_mqtt_iotda_against_the_gateway() -> None:
    status, report, log = await bench("mqtt", "--iotda", "--devices", "5", *LOAD)
    assert status == 0, log
    assert set(report["runs"]) == {"thingsboard_1", "iotda_1", "iotda_2", "thingsboard_2"}
    for run in report["runs"].values():
        assert_run_shape(run)
    checks = report["checks"]
    assert checks["rows in ts_kv, IoTDA"] == checks["data points acknowledged, IoTDA"] > 0
    assert checks["rows in ts_kv, ThingsBoard"] == checks["data points acknowledged, ThingsBoard"] > 0
    assert checks["rows verified"] is True
    (target,) = report["targets"]
    assert target["name"] == "IoTDA properties/report" and target["goal"].startswith(">= 90%")
