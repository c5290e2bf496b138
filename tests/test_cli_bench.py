"""`bench` and `simulate` on the gateway's command line: the simulator's own parsers, loaded
only when one of them runs, never by `serve`, `migrate` or `admin`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleetgate import config
from fleetgate.simulator import cli

# What `iot-gateway serve` (and each of its workers) loads: the parser, the app, the supervisor.
_SERVE_IMPORTS = """
import sys
import fleetgate.cli
fleetgate.cli.build_parser()
import fleetgate.app
import fleetgate.workers
loaded = sorted(name for name in sys.modules if name.split(".")[:2] == ["fleetgate", "simulator"])
assert not loaded, loaded
"""


def iot_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleetgate", *args], capture_output=True, text=True, timeout=60)


def test_serve_loads_nothing_of_the_simulator() -> None:
    result = subprocess.run([sys.executable, "-c", _SERVE_IMPORTS], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_commands_are_listed() -> None:
    result = iot_gateway("--help")
    assert result.returncode == 0
    assert "benchmark the gateway against a baseline" in result.stdout
    assert "load a gateway with a simulated fleet" in result.stdout


def test_bench_lists_its_scenarios() -> None:
    result = iot_gateway("bench", "--help")
    assert result.returncode == 0
    for scenario in ("http", "provision", "mqtt", "idle-connections", "mtls", "coap", "soak", "ota"):
        assert f"\n    {scenario}" in result.stdout


@pytest.mark.parametrize(("scenario", "present", "absent"), [
    ("mqtt", ("--qos", "--inflight", "--target", "--timestamps", "--rate"), ("--requests", "--connections")),
    ("http", ("--devices", "--rate", "--warmup"), ("--qos", "--target", "--requests", "--connections")),
    ("coap", ("--requests", "--memory-seconds", "--rate"), ("--qos", "--connections")),
    ("provision", ("--connections",), ("--devices", "--qos", "--rate")),
    ("idle-connections", ("--connections", "--target", "--mqtt-version"), ("--devices", "--qos", "--warmup")),
    ("mtls", ("--devices", "--connect-rate"), ("--duration", "--qos", "--rate")),
    ("soak", ("--duration", "--rate", "--qos"), ("--target", "--requests")),
])
def test_a_scenario_shows_its_own_options(scenario: str, present: tuple[str, ...], absent: tuple[str, ...]) -> None:
    result = iot_gateway("bench", scenario, "--help")
    assert result.returncode == 0, result.stderr
    usage = result.stdout
    for option in present:
        assert option in usage
    for option in absent:
        assert f"{option} " not in usage and f"{option}\n" not in usage
    # The gateway's settings are accepted, said so in one line, and not listed.
    assert "Gateway settings are accepted" in usage
    for option in ("--batch-max-rows", "--http-port", "--database-url", "--log-level"):
        assert option not in usage.replace("--batch-max-rows N...", "")


def test_gateway_settings_go_to_the_gateway_under_test() -> None:
    args = cli.build_parser().parse_args(
        ["bench", "mqtt", "--devices", "7", "--workers", "2", "--batch-max-rows", "500", "--qos", "0"])
    options, settings = cli.bench_request(args)
    assert (options.scenario, options.devices, options.qos) == ("mqtt", 7, 0)
    assert (settings.workers, settings.batch_max_rows) == (2, 500)
    assert settings == config.load(overrides={"workers": 2, "batch_max_rows": 500})


def test_an_option_of_another_scenario_is_refused() -> None:
    result = iot_gateway("bench", "http", "--qos", "0")
    assert result.returncode == 2
    assert "unrecognized arguments: --qos 0" in result.stderr


def test_simulate_shows_its_own_options() -> None:
    result = iot_gateway("simulate", "--help")
    assert result.returncode == 0
    assert "--provision-key" in result.stdout and "--batch-max-rows" not in result.stdout
