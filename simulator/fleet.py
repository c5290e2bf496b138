"""``iot-gateway simulate``: a fleet of simulated devices against a gateway URL.

The fleet gets its credentials (simulator.fleet_credentials), connects on a
ramp and sends telemetry from generator processes with the bench's load drivers
(pre-encoded packets, no client library): as fast as acknowledgements allow
(a closed loop), or ``rate`` messages a second a device on a timetable (an open
loop), for a duration or a number of messages. Latencies are kept second by
second for the plot; the generators report their counts for the live display.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import orjson

from fleetgate.simulator import fleet_ca, fleet_credentials
from fleetgate.simulator.coap_packets import CoapTelemetrySpec
from fleetgate.simulator.errors import SimulatorError
from fleetgate.simulator.fleet_credentials import FleetCredentials
from fleetgate.simulator.fleet_protocols import PROTOCOLS
from fleetgate.simulator.loadspec import LoadSpec
from fleetgate.simulator.mqtt_packets import VERSIONS, encode_connect
from fleetgate.simulator.mqtt_tls import MqttTls, client_tls
from fleetgate.simulator.stats import LoadResult
from fleetgate.simulator.workloads import DEFAULT_TELEMETRY

_MAX_DURATION = 24 * 3600.0  # the time bound of a run given only a message count
_MAX_RATE = 1_000_000  # messages a second: the count bound of a run given only a duration
PROGRESS_INTERVAL = 0.5
_TRUST_TIMEOUT = 30.0


class FleetError(SimulatorError):
    """The simulation cannot run as asked."""


@dataclass(frozen=True, slots=True)
class FleetOptions:
    url: str
    devices: int = 100
    tokens_file: str | None = None
    provision_key: str | None = None
    provision_secret: str | None = None
    provision_url: str | None = None
    ca_cert: str | None = None
    ca_key: str | None = None
    cert_subject: str = ""
    register_ca: bool = False
    management_url: str | None = None
    project_id: str | None = None
    project_token: str | None = None
    product_id: str | None = None
    server_ca: str | None = None
    server_name: str | None = None
    rate: float | None = None  # messages a second a device; None: as fast as acknowledgements allow
    datapoints: int = 3
    payload_bytes: int | None = None
    qos: int = 1
    inflight: int = 1
    devices_per_socket: int = 1  # CoAP: devices sharing a UDP socket (one source port), as behind a NAT
    mqtt_version: str = "3.1.1"
    duration: float | None = None
    messages: int | None = None
    connect_rate: float = 1_000.0
    processes: int = 1
    client_prefix: str = "sim-"
    credential_source: Literal["tokens", "provision", "certificates"] = "provision"

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def endpoint(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        if parts.scheme not in PROTOCOLS or not parts.hostname:
            raise FleetError(f"target {self.url!r}: expected {', '.join(p + '://HOST[:PORT]' for p in PROTOCOLS)}")
        return parts.hostname, parts.port or PROTOCOLS[parts.scheme].default_port

    @property
    def run_duration(self) -> float:
        if self.duration is not None:
            return self.duration
        return _MAX_DURATION if self.messages is not None else 10.0

    @property
    def max_messages(self) -> int:
        if self.messages is not None:
            return self.messages
        return math.ceil(self.run_duration * _MAX_RATE)


def telemetry_body(datapoints: int, payload_bytes: int | None) -> bytes:
    """``datapoints`` values (the default three: a double, a long, a boolean); with
    ``payload_bytes``, the last value is a string padding the JSON to that size."""
    if datapoints == 3 and payload_bytes is None:
        return DEFAULT_TELEMETRY
    values: dict[str, object] = {f"v{i}": round(20 + i * 0.5, 1) for i in range(datapoints)}
    body = orjson.dumps(values)
    if payload_bytes is None or payload_bytes <= len(body):
        return body
    values[f"v{datapoints - 1}"] = ""
    short = len(orjson.dumps(values))
    values[f"v{datapoints - 1}"] = "x" * max(0, payload_bytes - short)
    return orjson.dumps(values)


async def credentials(options: FleetOptions, scratch: Path, say: Callable[[str], None]) -> FleetCredentials:
    match options.credential_source:
        case "tokens":
            assert options.tokens_file is not None
            return fleet_credentials.tokens_from_file(options.tokens_file, options.devices)
        case "provision":
            url = options.provision_url or (options.url if options.scheme in ("http", "coap") else None)
            if url is None or options.provision_key is None or options.provision_secret is None:
                raise FleetError("claim provisioning needs --provision-key, --provision-secret and, for an "
                                 "MQTT target, --provision-url (the device API's http:// or coap:// URL)")
            say(f"provisioning {options.devices} devices through {url}")
            return await fleet_credentials.provision(
                url, options.provision_key, options.provision_secret, options.devices,
                f"{options.client_prefix}{secrets.token_hex(3)}-",
            )
        case "certificates":
            if not PROTOCOLS[options.scheme].certificates:
                raise FleetError(f"client certificates need a TLS target (mqtts://), not {options.scheme}://")
            ca = _ca(options)
            if options.register_ca:
                await _register(ca, options, say)
            say(f"minting {options.devices} device certificates (ECDSA P-256)")
            names = [f"{options.client_prefix}{secrets.token_hex(4)}-{i}" for i in range(options.devices)]
            paths = ca.write_devices(scratch / "devices", names, fleet_ca.parse_subject(options.cert_subject))
            if options.register_ca:
                say("waiting for the gateway to trust the new CA")
                host, port = options.endpoint
                await wait_until_trusted(host, port, paths[0], options.server_ca, options.server_name,
                                         VERSIONS[options.mqtt_version], f"{options.client_prefix}probe")
            return fleet_credentials.certificate_devices(paths)


def _ca(options: FleetOptions) -> fleet_ca.TestCa:
    if options.ca_cert and options.ca_key:
        return fleet_ca.TestCa.load(options.ca_cert, options.ca_key)
    if options.register_ca:  # a throw-away CA, registered below
        return fleet_ca.TestCa.create(f"simulate CA {secrets.token_hex(4)}")
    raise FleetError("client certificates need --ca-cert and --ca-key, or --register-ca")


async def _register(ca: fleet_ca.TestCa, options: FleetOptions, say: Callable[[str], None]) -> None:
    missing = [flag for flag, value in (("--management-url", options.management_url),
                                        ("--project-id", options.project_id),
                                        ("--project-token", options.project_token),
                                        ("--product-id", options.product_id)) if not value]
    if missing:
        raise FleetError(f"--register-ca needs {', '.join(missing)}")
    assert options.management_url and options.project_id and options.project_token and options.product_id
    registration = await fleet_ca.register_ca(
        ca, options.management_url, options.project_id, options.project_token, options.product_id,
    )
    say(f"CA registered: certificate {registration.certificate_id}, template {registration.template_id}")


async def wait_until_trusted(
    host: str, port: int, certificate: str, server_ca: str | None, server_name: str | None, version: int,
    client_id: str,
) -> None:
    """Connect with ``certificate`` until the gateway accepts it: a gateway loads a newly
    verified CA into its TLS context on a database notification, a moment after the API
    call. Bounded: ``_TRUST_TIMEOUT`` seconds."""
    context = client_tls(MqttTls(server_ca, (certificate,), server_name))
    assert context is not None
    connect = encode_connect(client_id, keepalive=60, version=version)
    last = "no attempt"
    try:
        async with asyncio.timeout(_TRUST_TIMEOUT):
            for attempt in itertools.count():
                try:
                    reader, writer = await asyncio.open_connection(
                        host, port, ssl=context(0), server_hostname=server_name or host)
                    try:
                        writer.write(connect)
                        connack = await reader.readexactly(4)
                    finally:
                        writer.close()
                    if connack[0] == 0x20 and connack[3] == 0:
                        return
                    last = f"CONNACK 0x{connack[3]:02x}"
                except (OSError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                    last = type(exc).__name__
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    except TimeoutError:
        pass
    raise FleetError(f"the gateway did not accept the new CA's devices within {_TRUST_TIMEOUT:g} s ({last})")


def load_spec(options: FleetOptions, creds: FleetCredentials) -> LoadSpec:
    host, port = options.endpoint
    protocol = PROTOCOLS[options.scheme]
    body = telemetry_body(options.datapoints, options.payload_bytes)
    workload = protocol.workload(options, creds, body)
    return LoadSpec(
        host, port, workload,
        connections=workload.sockets if isinstance(workload, CoapTelemetrySpec) else len(creds.tokens),
        mode="open" if options.rate else "closed", warmup=0.0, duration=options.run_duration,
        rate=options.rate * len(creds.tokens) if options.rate else None, max_requests=options.max_messages,
        timeline=True, progress_interval=PROGRESS_INTERVAL,
    )


def scratch_directory() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="iot-gateway-simulate-")


def expected_total(options: FleetOptions, devices: int) -> int | None:
    """Messages the run will send, when that is known in advance (for the progress bar)."""
    if options.messages is not None:
        return options.messages
    if options.rate:
        return math.ceil(options.run_duration * options.rate * devices)
    return None


def connect_rate(result: LoadResult) -> float:
    return result.connections / result.connect_s if result.connect_s > 0 else 0.0
