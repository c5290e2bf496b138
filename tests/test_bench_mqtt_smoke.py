"""The MQTT load generator against a real broker: mosquitto, installed by .ci/run.

Not skipped when mosquitto is missing: these tests then fail and say so. Tiny
loads, counts and zero errors checked; no timing is asserted (the figures
depend on the machine). The gateway's own ``bench mqtt`` test lives with the
gateway's MQTT listener (tests/test_bench_smoke.py), but for the gateway-API
mode (``--gateways``), whose generator and scenario are tested here against
mosquitto, then against the gateway.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mosquitto import mosquitto, mosquitto_path
from fleetgate.simulator.mqtt_gateway import GATEWAY_TELEMETRY_TOPIC
from fleetgate.simulator.processes import RunningServer, ServerFailed, server_process
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.worker import run_load
from fleetgate.simulator.workloads import MqttTelemetrySpec
from tests.bench_support import LOAD, assert_run_shape, bench

DEVICES = 20
# Three gateways of four sub-devices each, two sub-devices a message: two messages go round.
GATEWAYS = ("--gateways", "3", "--subdevices", "4", "--devices-per-message", "2")


def require_mosquitto() -> None:
    assert mosquitto_path() is not None, (
        "mosquitto is not installed, and the MQTT load generator is tested against it: "
        "apt-get install mosquitto mosquitto-clients (.ci/run does)"
    )


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[RunningServer]:
    require_mosquitto()
    async with mosquitto(tmp_path) as server:
        yield server


def load(server: RunningServer, *, devices: int = DEVICES, mode: str = "closed", rate: float | None = None,
         **workload: object) -> LoadSpec:
    host, port = server.endpoint("mqtt")
    tokens = tuple(f"token-{i}" for i in range(devices))
    return LoadSpec(
        host, port, MqttTelemetrySpec(tokens, connect_rate=2_000, **workload),  # type: ignore[arg-type]
        connections=devices, mode=mode, rate=rate, warmup=0.2, duration=0.8,  # type: ignore[arg-type]
        max_requests=2_000_000, drain_timeout=5,
    )


def assert_clean(result: LoadResult, devices: int = DEVICES) -> None:
    assert result.errors == {}
    assert result.connections == devices
    assert result.ok > 0 and result.total_ok >= result.ok
    assert result.datapoints_per_request == 3


async def test_bench_mqtt_against_mosquitto() -> None:
    require_mosquitto()
    status, report, log = await bench(
        "mqtt", "--target", "mosquitto", "--devices", str(DEVICES), "--duration", "1", "--warmup", "0.2", "--json"
    )
    assert status == 0, log
    assert report["scenario"] == "mqtt" and report["unit"] == "messages"
    assert set(report["runs"]) == {"baseline_max", "baseline_rate"}
    for run in report["runs"].values():
        assert_run_shape(run)
        assert run["connections"] == DEVICES
        assert run["datapoints_per_request"] == 3
    at_rate = report["runs"]["baseline_rate"]
    assert at_rate["target_rate"] == pytest.approx(report["runs"]["baseline_max"]["requests_per_s"] / 2, rel=0.01)
    assert report["context"]["qos"] == 1 and report["context"]["inflight"] == 10
    assert report["error_count"] == 0


async def test_bench_mqtt_gateway_open_loops_and_capacity() -> None:
    """The gateway at a quarter and half of its maximum, each against mosquitto at the same rate,
    then at most two runs searching for the open-loop capacity (p99 under 25 ms)."""
    require_mosquitto()
    status, report, log = await bench("mqtt", "--devices", str(DEVICES), "--duration", "1", "--warmup", "0.2",
                                      "--json")
    assert status == 0, log
    runs = report["runs"]
    search = {name for name in runs if name.startswith("gateway_capacity_")}
    assert set(runs) - search == {"gateway_max", "baseline_max", "gateway_quarter", "baseline_quarter",
                                  "gateway_rate", "baseline_rate"}
    assert len(search) <= 2
    for run in runs.values():
        assert_run_shape(run)
        assert run["server_cpu_us_per_request"] >= 0  # the gateway's or mosquitto's own CPU, a message
    top = runs["gateway_max"]["requests_per_s"]
    for name, share in (("quarter", 0.25), ("rate", 0.5)):
        assert runs[f"gateway_{name}"]["target_rate"] == pytest.approx(top * share, rel=0.01)
        assert runs[f"baseline_{name}"]["target_rate"] == runs[f"gateway_{name}"]["target_rate"]
    assert {t["name"] for t in report["targets"]} == {"throughput", "latency at a quarter", "latency at half",
                                                       "open-loop capacity"}
    # Beside each p99: mosquitto's at the same rate, the disk's longest fdatasync in the run and the cores' load.
    for target in report["targets"]:
        if target["name"].startswith("latency"):
            assert "(mosquitto " in target["measured"] and "the disk's longest fdatasync" in target["measured"]
            assert "% busy)" in target["measured"]
    assert sum(note.startswith("machine during the gateway at ") for note in report["notes"]) == 2 + len(search)
    assert report["checks"]["rows verified"] is True
    assert report["error_count"] == 0


async def test_qos1_closed_and_open_loop(broker: RunningServer) -> None:
    closed = await run_load(load(broker), 0)
    assert_clean(closed)
    assert closed.histogram.count == closed.ok  # one PUBACK latency a message
    opened = await run_load(load(broker, mode="open", rate=2_000), 0)
    assert_clean(opened)
    # Every message due in the 0.8 s window was acknowledged; the priming message of each device counts in total_ok.
    assert opened.ok == 1_600
    assert opened.total_ok == 2_000 + DEVICES
    assert opened.target_rate == 2_000


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_qos0(broker: RunningServer, mode: str) -> None:
    result = await run_load(load(broker, mode=mode, rate=2_000 if mode == "open" else None, qos=0), 0)
    assert_clean(result)
    if mode == "open":
        assert result.ok == 1_600 and result.total_ok == 2_000
    else:  # counted when the PINGRESP after a burst confirms it read
        assert result.ok % 10 == 0 and result.histogram.count == result.ok // 10


async def test_mqtt5_with_timestamps_and_one_in_flight(broker: RunningServer) -> None:
    result = await run_load(load(broker, version=5, timestamps=True, inflight=1), 0)
    assert_clean(result)  # mosquitto answers MQTT 5 PUBACKs with 0x10, "no matching subscribers": a success


async def test_two_generator_processes(broker: RunningServer) -> None:
    result = await run_load(load(broker, mode="open", rate=2_000), 2)
    assert_clean(result)
    assert result.processes == 2
    assert result.ok == 1_600


async def test_refused_devices_are_counted_by_code(tmp_path: Path) -> None:
    require_mosquitto()
    async with mosquitto(tmp_path, extra_config=["allow_anonymous false"]) as server:
        refusals = ((4, "CONNACK refused: 0x05 not authorized"), (5, "CONNACK refused: 0x87 not authorized"))
        for version, error in refusals:
            result = await run_load(load(server, devices=5, version=version), 0)
            assert result.errors == {error: 5}
            assert result.connections == 0 and result.total_ok == 0


async def test_a_missing_listener_is_named(tmp_path: Path) -> None:
    child = "import time; print('http: http://127.0.0.1:9', flush=True); time.sleep(60)"
    with pytest.raises(ServerFailed, match="the gateway printed no mqtt listener \\(it printed: http\\)"):
        async with asyncio.timeout(30), server_process(
            "the gateway", [sys.executable, "-c", child], log_file=tmp_path / "log", listeners=("http", "mqtt"),
            grace=0.5,
        ):
            pass


async def test_connections_from_several_source_addresses(broker: RunningServer) -> None:
    result = await run_load(load(broker, source_hosts=("127.0.0.2", "127.0.0.3")), 0)
    assert_clean(result)


async def test_bench_idle_connections_against_mosquitto() -> None:
    require_mosquitto()
    status, report, log = await bench(
        "idle-connections", "--target", "mosquitto", "--connections", "200", "--duration", "1", "--json"
    )
    assert status == 0, log
    assert report["scenario"] == "idle-connections" and report["unit"] == "pings"
    run = report["runs"]["baseline_idle"]
    assert run["connections"] == 200 and run["error_count"] == 0
    assert run["requests"] > 0  # a PINGREQ every 30 s from each of 200 connections: about 7 in 1 s
    checks = report["checks"]
    assert checks["connections verified"] is True
    assert checks["mosquitto connections held"] == 200
    assert checks["mosquitto RSS holding them, KiB"] >= checks["mosquitto RSS before, KiB"] > 0


async def test_gateway_messages_against_mosquitto(broker: RunningServer) -> None:
    spec = load(broker, devices=3, topic=GATEWAY_TELEMETRY_TOPIC, subdevices=4, devices_per_message=2,
                timestamps=True)
    result = await run_load(spec, 0)
    assert result.errors == {}
    assert result.connections == 3 and result.ok > 0
    assert result.datapoints_per_request == 6  # two sub-devices' three data points
    # Before the clock, each gateway went once round its messages, one at a time.
    assert result.total_ok >= result.ok + 3 * 2


async def test_bench_mqtt_gateways_against_mosquitto() -> None:
    require_mosquitto()
    status, report, log = await bench("mqtt", "--target", "mosquitto", "--devices", "10", *GATEWAYS, *LOAD)
    assert status == 0, log
    assert report["scenario"] == "mqtt" and report["unit"] == "messages"
    assert set(report["runs"]) == {"direct_max", "gateway_api_max"}
    direct, through = report["runs"]["direct_max"], report["runs"]["gateway_api_max"]
    for run in (direct, through):
        assert_run_shape(run)
    assert (direct["connections"], direct["datapoints_per_request"]) == (10, 3)
    assert (through["connections"], through["datapoints_per_request"]) == (3, 6)
    assert set(report["ratios"]) == {"sub-devices through gateways / direct devices, data points/s"}
    assert report["targets"] == [] and report["checks"] == {}  # mosquitto stores nothing: nothing to promise
    context = report["context"]
    assert (context["gateways"], context["subdevices"], context["devices_per_message"]) == (3, 4, 2)
    assert report["error_count"] == 0


async def test_bench_mqtt_gateways_against_the_gateway() -> None:
    status, report, log = await bench("mqtt", "--devices", "10", *GATEWAYS, "--timestamps", *LOAD)
    assert status == 0, log
    assert set(report["runs"]) == {"direct_max", "gateway_api_max"}
    for run in report["runs"].values():
        assert_run_shape(run)
    checks = report["checks"]
    # Every sub-device was created by its gateway's messages, and PUBACK meant stored, sub-device by sub-device.
    assert checks["sub-devices in the database"] == 12 and checks["sub-devices verified"] is True
    assert checks["rows in ts_kv, sub-devices"] == checks["data points acknowledged, sub-devices"] > 0
    assert checks["rows in ts_kv, direct devices"] == checks["data points acknowledged, direct devices"] > 0
    assert checks["rows verified"] is True
    (target,) = report["targets"]
    assert target["name"] == "gateway API" and target["goal"].startswith(">= 80%")
    assert report["error_count"] == 0, log
