"""The simulator's subcommands, registered on the ``iot-gateway`` parser by gateway.cli."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gateway.config import Settings

# More to come with the device simulator: mqtt, coap, mtls, idle-connections.
SCENARIOS = ("http", "provision")

_BENCH_HELP = """\
Start a gateway on loopback with a temporary embedded PostgreSQL (or the
configured database_url), load it from a separate generator process and print
the figures. http: telemetry from --devices devices, one keep-alive connection
each, at maximum rate and then at --rate (default: half that maximum), compared
with a bare aiohttp handler measured in the same run. provision: --connections
connections creating new devices for --duration seconds. Gateway settings
(--batch-max-rows, --writers...) are passed to the gateway under test. Exit
status 1 if any request failed or a check did not hold.
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
                       help="http: simulated devices, one connection each [default: 1000]")
    bench.add_argument("--connections", type=_positive(int), default=100, metavar="N",
                       help="provision: concurrent connections [default: 100]")
    bench.add_argument("--duration", type=_positive(float), default=10.0, metavar="SECONDS",
                       help="measured time of each run [default: 10]")
    bench.add_argument("--warmup", type=_not_negative(float), default=2.0, metavar="SECONDS",
                       help="load before each measurement, not counted [default: 2]")
    bench.add_argument("--rate", type=_positive(float), metavar="PER_SECOND",
                       help="http: requests a second of the latency runs [default: half the measured maximum]")
    bench.add_argument("--load-processes", type=_not_negative(int), default=1, metavar="N",
                       help="load generator processes; 0 runs the load in the bench process [default: 1]")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_settings(bench)
    bench.set_defaults(run=_bench)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from simulator.bench import BenchOptions, run

    options = BenchOptions(
        scenario=args.scenario, devices=args.devices, duration=args.duration, warmup=args.warmup, rate=args.rate,
        connections=args.connections, load_processes=args.load_processes, json=args.json,
    )
    return run(options, settings)


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = _parse(kind, text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
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
