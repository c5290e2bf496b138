"""The device front-ends, built from the settings over the one device service: HTTP(S), MQTT(S)
and CoAP, and the addresses they listen on."""

from __future__ import annotations

from dataclasses import dataclass

from fleetgate.config import Settings
from fleetgate.core.device_service import DeviceService
from fleetgate.protocols.coap.server import CoapServer, CoapSettings
from fleetgate.protocols.http.connection import HttpLimits
from fleetgate.protocols.http.device_api import DeviceApi
from fleetgate.protocols.http.device_server import DeviceHttpServer
from fleetgate.protocols.mqtt.connect import Limits
from fleetgate.protocols.mqtt.server import MqttServer, MqttSettings


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    url: str


def listener(name: str, host: str, port: int) -> Listener:
    """What a listener is announced as: a wildcard address as the loopback one a client can use."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return Listener(name, f"{'http' if name == 'management' else name}://{shown}:{port}")


def device_http(s: Settings, device_service: DeviceService) -> DeviceHttpServer:
    return DeviceHttpServer(
        DeviceApi(device_service, s.http_max_long_polls, s.http_rpc_poll_grace_seconds),
        HttpLimits(s.max_payload_bytes, s.http_idle_seconds, s.http_request_timeout_seconds, s.http_max_head_bytes),
        s.tls_handshake_timeout_seconds, device_service.certificate_refused,
    )


def mqtt(s: Settings, device_service: DeviceService) -> MqttServer:
    return MqttServer(
        device_service,
        MqttSettings(
            # The packet limit leaves room for the topic and properties around a full payload.
            Limits(s.max_payload_bytes + 1024, s.mqtt_max_inflight, s.mqtt_topic_alias_maximum,
                   s.mqtt_max_client_id_length, s.mqtt_max_topic_length),
            s.mqtt_connect_timeout_seconds, s.mqtt_provision_close_seconds, s.mqtt_max_connections,
            s.tls_handshake_timeout_seconds,
        ),
    )


def coap(s: Settings, device_service: DeviceService) -> CoapServer:
    return CoapServer(device_service, CoapSettings(s.max_payload_bytes, s.coap_dedup_seconds))
