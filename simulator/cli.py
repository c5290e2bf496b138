"""The simulator's subcommands, registered on the ``iot-gateway`` parser by gateway.cli."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from fleetgate.config import Settings

SCENARIOS = ("http", "provision", "mqtt", "idle-connections", "mtls", "coap", "soak")

_BENCH_HELP = """\
Start a gateway on loopback with a temporary embedded PostgreSQL (or the
configured database_url), load it from a separate generator process and print
the figures. http: telemetry from --devices devices, one keep-alive connection
each, at maximum rate and then at --rate (default: half that maximum), compared
with a bare aiohttp handler measured in the same run. provision: --connections
connections creating new devices for --duration seconds. mqtt: the same as http
over MQTT (one connection a device, user name = access token, QoS --qos with
--inflight messages unacknowledged), compared with mosquitto; --target mosquitto
measures mosquitto alone. idle-connections: --connections idle MQTT
connections held for --duration seconds with keep-alive pings; the server's
memory (VmRSS, summed over the gateway's processes) before and while holding
them, and so per connection, for the gateway and mosquitto. mtls: --devices
devices with ECDSA P-256 client certificates from a CA the bench registers,
connecting for the first time (auto-registration), then again. coap: confirmable
CoAP telemetry from --devices devices at maximum rate, compared with a bare
aiocoap handler, then --requests more with the gateway's VmRSS before and after.
soak: MQTT telemetry for --duration seconds (issue 6: 1800) at --rate (default:
half the maximum a 10-second closed loop measures), the gateway's VmRSS read 30
times; it must end within 10% of the reading after the first sixth.
--workers N runs the gateway with N worker processes. Gateway settings (--batch-max-rows, --writers...) are
passed to the gateway under test. Exit status 1 if any request failed or a
check did not hold.
"""


def add_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    add_settings: Callable[[argparse.ArgumentParser], None],
) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmark the gateway against a baseline", description=_BENCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("scenario", choices=SCENARIOS, help="what to measure")
    bench.add_argument("--devices", type=_positive(int), default=1_000, metavar="N",
                       help="http, mqtt, mtls, soak: simulated devices, one connection each [default: 1000]")
    bench.add_argument("--connections", type=_positive(int), metavar="N",
                       help="provision: concurrent connections [default: 100]; idle-connections: "
                            "idle MQTT connections [default: 50000]")
    bench.add_argument("--duration", type=_positive(float), default=10.0, metavar="SECONDS",
                       help="measured time of each run; soak: the soak's length [default: 10]")
    bench.add_argument("--warmup", type=_not_negative(float), default=2.0, metavar="SECONDS",
                       help="load before each measurement, not counted [default: 2]")
    bench.add_argument("--rate", type=_positive(float), metavar="PER_SECOND",
                       help="http, mqtt, soak: requests (messages) a second of the latency runs "
                            "[default: half the measured maximum]")
    bench.add_argument("--load-processes", type=_not_negative(int), default=1, metavar="N",
                       help="load generator processes; 0 runs the load in the bench process [default: 1]")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    mqtt = bench.add_argument_group("mqtt and idle-connections")
    mqtt.add_argument("--target", choices=("gateway", "mosquitto"), default="gateway",
                      help="gateway (and mosquitto as the baseline, when installed), or mosquitto alone "
                           "[default: gateway]")
    mqtt.add_argument("--qos", type=int, choices=(0, 1), default=1, help="QoS of the messages [default: 1]")
    mqtt.add_argument("--inflight", type=_in_range(1, 65_535), default=10, metavar="N",
                      help="unacknowledged QoS 1 messages a connection may have [default: 10]")
    mqtt.add_argument("--mqtt-version", choices=("3.1.1", "5"), default="3.1.1",
                      help="MQTT protocol version [default: 3.1.1]")
    mqtt.add_argument("--connect-rate", type=_positive(float), default=1_000.0, metavar="PER_SECOND",
                      help="new connections a second while the devices connect [default: 1000]")
    mqtt.add_argument("--timestamps", action="store_true",
                      help='send {"ts":T,"values":{...}} with a T unique to each message of a device, '
                           "so the rows check is exact with several messages in flight")
    coap = bench.add_argument_group("coap")
    coap.add_argument("--requests", type=_not_negative(int), default=1_000_000, metavar="N",
                      help="requests of the memory run, the gateway's RSS read before and after; 0: none "
                           "[default: 1000000]")
    coap.add_argument("--memory-seconds", type=_positive(float), default=900.0, metavar="SECONDS",
                      help="time cap of the memory run [default: 900]")
    add_settings(bench)
    bench.set_defaults(run=_bench)

    from fleetgate.simulator.fleet_cli import add_simulate

    add_simulate(subparsers, _positive, _not_negative)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from fleetgate.simulator.bench import run
    from fleetgate.simulator.bench_options import BenchOptions

    options = BenchOptions(
        scenario=args.scenario, devices=args.devices, duration=args.duration, warmup=args.warmup, rate=args.rate,
        connections=args.connections, load_processes=args.load_processes, json=args.json,
        target=args.target, qos=args.qos, inflight=args.inflight, mqtt_version=args.mqtt_version,
        connect_rate=args.connect_rate, timestamps=args.timestamps, requests=args.requests,
        memory_seconds=args.memory_seconds,
    )
    return run(options, settings)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _parse(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def _in_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(_parse(int, text))
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}..{high}, not {text}")
        return value

    return parse


def _not_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _parse(kind, text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
        return value

    return parse


def _parse(kind: Callable[[str], Any], text: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value
