"""``iot-gateway simulate``: its options, its live display and its output."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from fleetgate.simulator.arguments import not_negative, positive
from fleetgate.simulator.mqtt_packets import VERSIONS

if TYPE_CHECKING:
    from fleetgate.simulator.fleet import FleetOptions
    from fleetgate.simulator.fleet_report import FleetReport

# The fleet's modules are imported when the command runs, not when the parser is built:
# `iot-gateway bench` builds this parser too.

_HELP = """\
Simulate a fleet of devices against a gateway (this one, or any ThingsBoard-compatible
server): URL is mqtt://HOST[:PORT], mqtts://HOST[:PORT], http://HOST[:PORT] or
coap://HOST[:PORT]. Credentials come from a file of access tokens (--tokens), from claim
provisioning (--provision-key and --provision-secret, through --provision-url or the http://
or coap:// target), or from client
certificates minted from a local test CA (--ca-cert/--ca-key, mqtts only: the gateway
registers each device on its first connection once the CA is uploaded, verified and bound
to a template; --register-ca does that through the management API). Devices send telemetry
as fast as acknowledgements allow, or --rate messages a second each, for --duration seconds
or --messages messages. Prints messages and data points a second, acknowledgement latency
percentiles, connect and provisioning rates and errors by kind; exit status 1 if anything
failed.
"""


def add_simulate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("simulate", help="load a gateway with a simulated fleet", description=_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(run=_simulate)
    p.add_argument("url", help="mqtt://, mqtts://, http:// or coap:// URL of the gateway's device listener")
    p.add_argument("--devices", type=positive(int), default=100, metavar="N", help="devices [default: 100]")
    creds = p.add_argument_group("credentials (one of)")
    creds.add_argument("--tokens", dest="tokens_file", metavar="FILE", help="access tokens, one a line")
    creds.add_argument("--provision-key", metavar="KEY", help="claim provisioning: the product's provision key")
    creds.add_argument("--provision-secret", metavar="SECRET", help="claim provisioning: its secret")
    creds.add_argument("--provision-url", metavar="URL",
                       help="the device API (http://HOST:PORT or coap://HOST:PORT) to provision through "
                            "[default: the target, if http or coap]")
    creds.add_argument("--ca-cert", metavar="PEM", help="client certificates: the test CA's certificate")
    creds.add_argument("--ca-key", metavar="PEM", help="client certificates: the test CA's private key (EC)")
    creds.add_argument("--cert-subject", default="", metavar="FIELDS",
                       help="fixed subject fields of the device certificates besides CN (e.g. O=Acme,OU=Meters)")
    creds.add_argument("--register-ca", action="store_true",
                       help="upload the CA (a new one without --ca-cert), verify it, create a template "
                            "(device name and node id from the CN) and bind it, through the management API")
    creds.add_argument("--management-url", metavar="URL", help="--register-ca: the management API")
    creds.add_argument("--project-id", metavar="ID", help="--register-ca: the project")
    creds.add_argument("--project-token", metavar="TOKEN", help="--register-ca: a management token of it")
    creds.add_argument("--product-id", metavar="ID", help="--register-ca: the product devices are created in")
    tls = p.add_argument_group("TLS (mqtts)")
    tls.add_argument("--server-ca", metavar="PEM", help="check the server's certificate against this CA "
                                                        "[default: not checked]")
    tls.add_argument("--server-name", metavar="NAME", help="TLS server name [default: the URL's host]")
    load = p.add_argument_group("load")
    load.add_argument("--rate", type=positive(float), metavar="PER_SECOND",
                      help="messages a second each device sends [default: as fast as acknowledgements allow]")
    load.add_argument("--datapoints", type=positive(int), default=3, metavar="N",
                      help="data points a message [default: 3]")
    load.add_argument("--payload-bytes", type=positive(int), metavar="N",
                      help="pad each message's JSON to this size (the last value becomes a string)")
    load.add_argument("--qos", type=int, choices=(0, 1), default=1, help="MQTT QoS [default: 1]")
    load.add_argument("--inflight", type=positive(int), default=1, metavar="N",
                      help="MQTT QoS 1 messages (CoAP requests) a device may have unacknowledged [default: 1]")
    load.add_argument("--devices-per-socket", type=positive(int), default=1, metavar="N",
                      help="CoAP: devices sharing one UDP socket, as behind a NAT [default: 1]")
    load.add_argument("--mqtt-version", choices=tuple(VERSIONS), default="3.1.1", help="[default: 3.1.1]")
    load.add_argument("--duration", type=positive(float), metavar="SECONDS",
                      help="how long to send [default: 10, or until --messages are sent]")
    load.add_argument("--messages", type=positive(int), metavar="N", help="messages to send in all")
    load.add_argument("--connect-rate", type=positive(float), default=1_000.0, metavar="PER_SECOND",
                      help="MQTT connections opened a second (the ramp) [default: 1000]")
    load.add_argument("--processes", type=not_negative(int), default=1, metavar="N",
                      help="load generator processes; 0: in this process [default: 1]")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    out.add_argument("--plot", metavar="FILE.png", help="throughput and latency over time (needs matplotlib)")
    out.add_argument("--quiet", action="store_true", help="no progress display")


def _options(args: argparse.Namespace) -> FleetOptions:
    from fleetgate.simulator.fleet import FleetError, FleetOptions

    sources = [name for name, given in (
        ("tokens", args.tokens_file), ("provision", args.provision_key),
        ("certificates", args.ca_cert or args.register_ca)) if given]
    if len(sources) != 1:
        raise FleetError("give exactly one source of credentials: --tokens, --provision-key/--provision-secret, "
                         "or --ca-cert/--ca-key (or --register-ca)")
    return FleetOptions(
        url=args.url, devices=args.devices, tokens_file=args.tokens_file, provision_key=args.provision_key,
        provision_secret=args.provision_secret, provision_url=args.provision_url, ca_cert=args.ca_cert,
        ca_key=args.ca_key, cert_subject=args.cert_subject, register_ca=args.register_ca,
        management_url=args.management_url, project_id=args.project_id, project_token=args.project_token,
        product_id=args.product_id, server_ca=args.server_ca, server_name=args.server_name, rate=args.rate,
        datapoints=args.datapoints, payload_bytes=args.payload_bytes, qos=args.qos, inflight=args.inflight,
        devices_per_socket=args.devices_per_socket, mqtt_version=args.mqtt_version, duration=args.duration, messages=args.messages,
        connect_rate=args.connect_rate, processes=args.processes, credential_source=sources[0],  # type: ignore[arg-type]
    )


def _simulate(args: argparse.Namespace) -> int:
    import orjson

    from fleetgate.simulator import runtime
    from fleetgate.simulator.fleet import FleetError
    from fleetgate.simulator.fleet_ca import CaError
    from fleetgate.simulator.fleet_credentials import CredentialsError
    from fleetgate.simulator.fleet_report import PlotUnavailable, check_plotting, format_report, plot
    from fleetgate.simulator.processes import raise_open_files_limit
    from fleetgate.simulator.worker import WorkerFailed

    try:
        options = _options(args)
        options.endpoint  # noqa: B018 - validates the URL before anything starts
        if args.plot:
            check_plotting()
    except (FleetError, PlotUnavailable) as exc:
        print(f"iot-gateway simulate: {exc}", file=sys.stderr)
        return 2
    raise_open_files_limit()
    live = not args.quiet and sys.stderr.isatty()
    try:
        report = runtime.run(_run(options, live, quiet=args.quiet))
    except (FleetError, CaError, CredentialsError, WorkerFailed, OSError) as exc:
        print(f"iot-gateway simulate: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print("iot-gateway simulate: the run did not end within its deadline", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(format_report(report))
    sys.stdout.flush()
    if args.plot:
        plot(report, args.plot)
    return 0 if report.ok else 1


async def _run(options: FleetOptions, live: bool, *, quiet: bool) -> FleetReport:
    from fleetgate.simulator import fleet
    from fleetgate.simulator.fleet_report import FleetReport
    from fleetgate.simulator.worker import run_load

    def say(message: str) -> None:
        if not quiet:
            print(f"simulate: {message}", file=sys.stderr, flush=True)

    with fleet.scratch_directory() as scratch:
        from pathlib import Path

        creds = await fleet.credentials(options, Path(scratch), say)
        spec = fleet.load_spec(options, creds)
        say(f"connecting {len(creds.tokens)} devices to {options.url}")
        display = _Display(live, fleet.expected_total(options, len(creds.tokens)), options.run_duration)
        with display:
            result = await run_load(spec, options.processes, on_ready=display.started,
                                    on_progress=display.update)
    return FleetReport(
        url=options.url, protocol=options.scheme, devices=options.devices, mode="rate" if options.rate else "max",
        qos=options.qos if fleet.PROTOCOLS[options.scheme].qos else None, result=result,
        provisioned=creds.provisioned, provision_s=creds.provision_s, provision_errors=creds.errors,
        connections=spec.connections,
    )


class _Display:
    """A rich progress bar on stderr, refreshed when a generator reports (no refresh thread)."""

    def __init__(self, live: bool, total: int | None, duration: float) -> None:
        self._progress: Any = None
        self._task: Any = None
        if live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} msg/s"), TimeElapsedColumn(),
                auto_refresh=False, transient=True,
            )
            self._total = total
            self._duration = duration

    def __enter__(self) -> _Display:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("connecting", total=None, rate="-")
            self._progress.refresh()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    async def started(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description="sending", total=self._total)
            self._progress.reset(self._task, total=self._total)
            self._progress.refresh()

    def update(self, count: int) -> None:
        if self._progress is None:
            return
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        rate = f"{count / elapsed:,.0f}" if elapsed > 0 else "-"
        self._progress.update(self._task, completed=count, rate=rate)
        self._progress.refresh()
