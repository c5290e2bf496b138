"""The transports a simulated fleet can use, chosen by the target URL's scheme.

Each entry says how to turn the fleet's options and credentials into the
workload a generator process runs (simulator.workloads; CoAP's is in
simulator.coap_packets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fleetgate.simulator.coap_packets import CoapTelemetrySpec
from fleetgate.simulator.mqtt_packets import VERSIONS
from fleetgate.simulator.mqtt_tls import MqttTls
from fleetgate.simulator.workloads import MqttTelemetrySpec, TelemetrySpec, WorkloadSpec

if TYPE_CHECKING:
    from fleetgate.simulator.fleet import FleetOptions
    from fleetgate.simulator.fleet_credentials import FleetCredentials


@dataclass(frozen=True, slots=True)
class FleetProtocol:
    scheme: str
    default_port: int
    certificates: bool  # devices may authenticate with client certificates
    qos: bool  # --qos means something
    workload: Callable[[FleetOptions, FleetCredentials, bytes], WorkloadSpec]


def _mqtt(options: FleetOptions, credentials: FleetCredentials, body: bytes) -> MqttTelemetrySpec:
    return MqttTelemetrySpec(
        credentials.tokens, body=body, qos=options.qos, inflight=options.inflight,
        version=VERSIONS[options.mqtt_version], connect_rate=options.connect_rate,
        client_prefix=options.client_prefix,
    )


def _mqtts(options: FleetOptions, credentials: FleetCredentials, body: bytes) -> MqttTelemetrySpec:
    tls = MqttTls(options.server_ca, credentials.certificates, options.server_name)
    return replace(_mqtt(options, credentials, body), tls=tls)


def _http(options: FleetOptions, credentials: FleetCredentials, body: bytes) -> TelemetrySpec:
    return TelemetrySpec(credentials.tokens, body)


def _coap(options: FleetOptions, credentials: FleetCredentials, body: bytes) -> CoapTelemetrySpec:
    return CoapTelemetrySpec(
        credentials.tokens, body, devices_per_socket=options.devices_per_socket, inflight=options.inflight,
    )


PROTOCOLS: dict[str, FleetProtocol] = {
    "mqtt": FleetProtocol("mqtt", 1883, certificates=False, qos=True, workload=_mqtt),
    "mqtts": FleetProtocol("mqtts", 8883, certificates=True, qos=True, workload=_mqtts),
    "http": FleetProtocol("http", 80, certificates=False, qos=False, workload=_http),
    "coap": FleetProtocol("coap", 5683, certificates=False, qos=False, workload=_coap),
}
