"""``iot-gateway bench`` and ``iot-gateway simulate``: their parsers and their dispatch.

The gateway's command line registers both commands without importing this package
and hands their arguments here when one runs (``main``), so ``serve`` and every
worker process never load the simulator. ``bench`` has one sub-parser a scenario,
with the options that scenario reads; the gateway settings (``--workers 2``,
``--batch-max-rows N``, ``--config FILE``...) are accepted by every scenario and passed
to the gateway under test, but left out of the help, which says so in one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields

from fleetgate import config
from fleetgate.config import Settings
from fleetgate.simulator.arguments import in_range, not_negative, positive
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.errors import SimulatorError
from fleetgate.simulator.fleet_cli import add_simulate

_BENCH_HELP = """\
Start a gateway on loopback with a temporary embedded PostgreSQL (or the
configured database_url), load it from a separate generator process and print
the figures, each against a baseline measured in the same run. Exit status 1 if
any request failed or a check did not hold. `iot-gateway bench SCENARIO --help`
shows a scenario's options.
"""

_SETTINGS_LINE = (
    "Gateway settings are accepted too and passed to the gateway under test: --config FILE and "
    "the flags of `iot-gateway serve --help` (--workers 2, --batch-max-rows N...)."
)

_SCENARIOS: dict[str, tuple[str, str]] = {  # name: (one line, description)
    "http": (
        "HTTP telemetry against a bare aiohttp handler",
        "Telemetry from --devices devices, one keep-alive connection each, at maximum rate and then "
        "at --rate (default: half that maximum), compared with a bare aiohttp handler measured in "
        "the same run.",
    ),
    "provision": (
        "claim provisioning: connections creating new devices",
        "--connections connections creating new devices through claim provisioning for --duration seconds.",
    ),
    "mqtt": (
        "MQTT telemetry against mosquitto",
        "The same as http over MQTT (one connection a device, user name = access token, QoS --qos with "
        "--inflight messages unacknowledged), compared with mosquitto when it is installed; "
        "--target mosquitto measures mosquitto alone. With --gateways N: ThingsBoard's gateway API "
        "instead, N gateway connections each publishing for --subdevices sub-devices, "
        "--devices-per-message of them a message, against --devices direct devices in stored data "
        "points a second (target: at least 80%).",
    ),
    "idle-connections": (
        "the memory of idle MQTT connections",
        "--connections idle MQTT connections held for --duration seconds with keep-alive pings; the "
        "server's memory (VmRSS, summed over the gateway's processes) before and while holding them, "
        "and so per connection, for the gateway and mosquitto.",
    ),
    "mtls": (
        "mutual TLS: first connections (auto-registration), then reconnections",
        "--devices devices with ECDSA P-256 client certificates from a CA the bench registers, "
        "connecting for the first time (auto-registration), then again, then again resuming their "
        "TLS sessions; compared with what one TLS handshake costs in memory.",
    ),
    "coap": (
        "CoAP telemetry against a bare aiocoap handler, then memory",
        "Confirmable CoAP telemetry from --devices devices at maximum rate, then at --rate (default: half "
        "that maximum), compared with a bare aiocoap handler at both, then --requests more with the "
        "gateway's VmRSS before and after.",
    ),
    "ota": (
        "one OTA package downloaded by many MQTT devices at once",
        "--devices MQTT devices fetch one --package-bytes package in --chunk-bytes chunks at once, as "
        "ThingsBoard's SDK does; chunks/s and MB/s against a bare asyncio responder serving the same "
        "bytes, and the gateway's VmRSS before, at its highest during, and after the downloads.",
    ),
    "query": (
        "time-series and fleet queries on a loaded data set",
        "--fleet-devices devices, the first --devices of them with --days days of 1-minute data of 3 keys "
        "(100 x 30: 13 M rows) loaded through the device API within --load-seconds; then --queries times "
        "each: a week of hourly averages of one key of one device, and 1,000-device pages of the 3 keys' "
        "latest values; p50 and p95 against the same answers read straight through the SQL views.",
    ),
    "soak": (
        "MQTT telemetry for a long time: the gateway's memory must settle",
        "MQTT telemetry for --duration seconds (1800 for a real soak) at --rate (default: half the "
        "maximum a 10-second closed loop measures), the gateway's VmRSS read 30 times; it must end "
        "within 10% of the reading after the first sixth.",
    ),
}


def main(argv: Sequence[str]) -> int:
    """Run ``bench ...`` or ``simulate ...`` (``argv`` from the command's name on)."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iot-gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench", help="benchmark the gateway against a baseline", description=_BENCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scenarios = bench.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for name, (summary, description) in _SCENARIOS.items():
        scenario = scenarios.add_parser(name, help=summary, description=description, epilog=_SETTINGS_LINE)
        _SCENARIO_OPTIONS[name](scenario)
        scenario.add_argument("--load-processes", type=not_negative(int), default=1, metavar="N",
                              help="load generator processes; 0 runs the load in the bench process [default: 1]")
        scenario.add_argument("--json", action="store_true", help="print the figures as JSON")
        _add_hidden_settings(scenario)
        scenario.set_defaults(run=_bench)
    add_simulate(commands)
    return parser


def bench_request(args: argparse.Namespace) -> tuple[BenchOptions, Settings]:
    """What a parsed ``bench`` command line asks for: the scenario's options, the gateway's settings."""
    given = {f.name: getattr(args, f.name) for f in fields(BenchOptions) if hasattr(args, f.name)}
    options = BenchOptions(**given)
    overrides = {k[len("setting_"):]: v for k, v in vars(args).items() if k.startswith("setting_")}
    return options, config.load(args.config, overrides=overrides)


def _bench(args: argparse.Namespace) -> int:
    from fleetgate.simulator.bench import run

    try:
        options, settings = bench_request(args)
    except config.ConfigError as exc:
        print(f"iot-gateway bench: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return run(options, settings)
    except SimulatorError as exc:
        print(f"iot-gateway bench: {exc.message}", file=sys.stderr)
        return 1


def _add_hidden_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help=argparse.SUPPRESS)
    for key, _, _, _ in config.describe():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=f"setting_{key}", help=argparse.SUPPRESS)


# The options of each scenario: only those it reads.


def _devices(parser: argparse.ArgumentParser, what: str = "simulated devices, one connection each") -> None:
    parser.add_argument("--devices", type=positive(int), default=1_000, metavar="N", help=f"{what} [default: 1000]")


def _timing(parser: argparse.ArgumentParser, duration: str = "measured time of each run") -> None:
    parser.add_argument("--duration", type=positive(float), default=10.0, metavar="SECONDS",
                        help=f"{duration} [default: 10]")
    parser.add_argument("--warmup", type=not_negative(float), default=2.0, metavar="SECONDS",
                        help="load before each measurement, not counted [default: 2]")


def _rate(parser: argparse.ArgumentParser, unit: str) -> None:
    parser.add_argument("--rate", type=positive(float), metavar="PER_SECOND",
                        help=f"{unit} a second of the latency run [default: half the measured maximum]")


def _mqtt(parser: argparse.ArgumentParser, *, messages: bool = True, target: bool = True) -> None:
    group = parser.add_argument_group("MQTT")
    if target:
        group.add_argument("--target", choices=("gateway", "mosquitto"), default="gateway",
                           help="gateway (and mosquitto as the baseline, when installed), or mosquitto alone "
                                "[default: gateway]")
    if messages:
        group.add_argument("--qos", type=int, choices=(0, 1), default=1, help="QoS of the messages [default: 1]")
        group.add_argument("--inflight", type=in_range(1, 65_535), default=10, metavar="N",
                           help="unacknowledged QoS 1 messages a connection may have [default: 10]")
    group.add_argument("--mqtt-version", choices=("3.1.1", "5"), default="3.1.1",
                       help="MQTT protocol version [default: 3.1.1]")
    group.add_argument("--connect-rate", type=positive(float), default=1_000.0, metavar="PER_SECOND",
                       help="new connections a second while the devices connect [default: 1000]")
    if messages:
        group.add_argument("--timestamps", action="store_true",
                           help='send {"ts":T,"values":{...}} with a T unique to each message of a device, '
                                "so the rows check is exact with several messages in flight")


def _http_options(parser: argparse.ArgumentParser) -> None:
    _devices(parser)
    _timing(parser)
    _rate(parser, "requests")


def _provision_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=positive(int), metavar="N",
                        help="concurrent connections creating devices [default: 100]")
    _timing(parser)


def _mqtt_options(parser: argparse.ArgumentParser) -> None:
    _devices(parser)
    _timing(parser)
    _rate(parser, "messages")
    _mqtt(parser)
    group = parser.add_argument_group("gateway API (v1/gateway/telemetry)")
    group.add_argument("--gateways", type=not_negative(int), default=0, metavar="N",
                       help="gateway devices, one connection each, publishing for their sub-devices; measured "
                            "against the --devices direct devices, no mosquitto runs; 0: off [default: 0]")
    group.add_argument("--subdevices", type=positive(int), default=100, metavar="M",
                       help="sub-devices behind each gateway [default: 100]")
    group.add_argument("--devices-per-message", type=positive(int), default=10, metavar="K",
                       help="sub-devices in each message, taking turns; at most --subdevices [default: 10]")
    group.add_argument("--gateway-inflight", type=in_range(1, 65_535), metavar="N",
                       help="unacknowledged messages a gateway connection may have [default: as many as keep "
                            "the direct devices' data points in flight, devices x inflight / (gateways x K)]")
    parser.add_argument_group("Huawei IoTDA").add_argument(
        "--iotda", action="store_true",
        help="as many IoTDA devices (a secret each) publishing $oc/.../properties/report, measured against the "
             "ThingsBoard devices' telemetry in alternating runs")
    forwarding = parser.add_argument_group("data forwarding")
    forwarding.add_argument(
        "--forwarding", action="store_true",
        help="stored data points a second with one HTTP forwarding action to a local receiver against the same "
             "run without, then the forwarding lag at half that rate; delivery in a forwarder process of its own "
             "(forwarding_process)")
    forwarding.add_argument(
        "--forwarding-in-process", action="store_true",
        help="with --forwarding: delivery in the gateway process itself, as without forwarding_process")


def _idle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=positive(int), metavar="N",
                        help="idle MQTT connections [default: 50000]")
    parser.add_argument("--duration", type=positive(float), default=10.0, metavar="SECONDS",
                        help="how long the connections are held [default: 10]")
    _mqtt(parser, messages=False)


def _mtls_options(parser: argparse.ArgumentParser) -> None:
    _devices(parser, "devices, each with its own client certificate")
    parser.add_argument("--connect-rate", type=positive(float), default=1_000.0, metavar="PER_SECOND",
                        help="new connections a second [default: as fast as the handshakes go]")


def _coap_options(parser: argparse.ArgumentParser) -> None:
    _devices(parser, "simulated devices, one UDP socket each")
    _timing(parser)
    _rate(parser, "requests")
    group = parser.add_argument_group("memory run")
    group.add_argument("--requests", type=not_negative(int), default=1_000_000, metavar="N",
                       help="requests of the memory run, the gateway's RSS read before and after; 0: none "
                            "[default: 1000000]")
    group.add_argument("--memory-seconds", type=positive(float), default=900.0, metavar="SECONDS",
                       help="time cap of the memory run [default: 900]")


def _ota_options(parser: argparse.ArgumentParser) -> None:
    _devices(parser)
    parser.add_argument("--duration", type=positive(float), default=120.0, metavar="SECONDS",
                        help="time cap of each download run [default: 120]")
    parser.add_argument("--package-bytes", type=positive(int), default=1024 * 1024, metavar="N",
                        help="size of the package [default: 1048576]")
    parser.add_argument("--chunk-bytes", type=positive(int), default=16 * 1024, metavar="N",
                        help="chunk size the devices ask for [default: 16384]")


def _query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=positive(int), default=100, metavar="N",
                        help="devices sending the history [default: 100]")
    parser.add_argument("--days", type=positive(int), default=30, metavar="N",
                        help="days of 1-minute data each of them sends [default: 30]")
    parser.add_argument("--fleet-devices", type=positive(int), default=10_000, metavar="N",
                        help="devices in the fleet, those with history included [default: 10000]")
    parser.add_argument("--load-seconds", type=positive(float), default=900.0, metavar="SECONDS",
                        help="time cap of loading; what was loaded by then is measured [default: 900]")
    parser.add_argument("--queries", type=positive(int), default=200, metavar="N",
                        help="times each query is timed [default: 200]")


def _soak_options(parser: argparse.ArgumentParser) -> None:
    _devices(parser)
    _timing(parser, "the soak's length")
    _rate(parser, "messages")
    _mqtt(parser, target=False)


_SCENARIO_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "http": _http_options,
    "provision": _provision_options,
    "mqtt": _mqtt_options,
    "idle-connections": _idle_options,
    "mtls": _mtls_options,
    "coap": _coap_options,
    "soak": _soak_options,
    "ota": _ota_options,
    "query": _query_options,
}
