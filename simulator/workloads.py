"""What simulated devices send: ThingsBoard telemetry over HTTP or MQTT, and claim provisioning.

Each workload is described by a frozen spec (JSON-able, so a generator process
can be handed one). The HTTP ones are built into the object the HTTP load
drivers call per request; the MQTT one is read by simulator.mqtt_load, which
pre-encodes its packets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from fleetgate.simulator.http11 import encode_post
from fleetgate.simulator.mqtt_tls import MqttTls

# Three data points, one of each common type: double, long, boolean.
DEFAULT_TELEMETRY = b'{"temperature":21.5,"humidity":40,"active":true}'

_STATUS_ERRORS = {status: f"HTTP {status}" for status in range(100, 600)}


def status_error(status: int) -> str:
    return _STATUS_ERRORS.get(status) or f"HTTP {status}"


@dataclass(frozen=True, slots=True)
class TelemetrySpec:
    """One device per access token, each posting ``body`` to /api/v1/{token}/telemetry."""

    tokens: tuple[str, ...]
    body: bytes = DEFAULT_TELEMETRY

    @property
    def datapoints(self) -> int:
        root = orjson.loads(self.body)
        return len(root) if isinstance(root, dict) else sum(len(item.get("values", item)) for item in root)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "telemetry", "tokens": list(self.tokens), "body": self.body.decode()}

    def split(self, parts: int) -> list[TelemetrySpec]:
        """Disjoint shares of the devices, for ``parts`` generator processes."""
        size = -(-len(self.tokens) // parts)
        return [TelemetrySpec(self.tokens[i : i + size], self.body) for i in range(0, len(self.tokens), size)]


@dataclass(frozen=True, slots=True)
class ProvisionSpec:
    """New devices named ``{prefix}{n}``, created through POST /api/v1/provision; with
    ``gateway``, as gateway devices (ThingsBoard's ``"gateway": true``)."""

    provision_key: str
    provision_secret: str
    prefix: str
    gateway: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"kind": "provision", "key": self.provision_key, "secret": self.provision_secret, "prefix": self.prefix,
                "gateway": self.gateway}


MQTT_TELEMETRY_TOPIC = "v1/devices/me/telemetry"


@dataclass(frozen=True, slots=True)
class MqttTelemetrySpec:
    """One MQTT connection per access token (the CONNECT's user name, as ThingsBoard's devices
    do), each publishing ``body`` to ``topic``.

    ``inflight``: unacknowledged QoS 1 messages a connection may have (MQTT devices
    pipeline). ``version``: MQTT protocol level, 4 (3.1.1) or 5. ``connect_rate``:
    CONNECTs a second while connecting. ``timestamps``: send
    ``{"ts":T,"values":BODY}`` with a T in milliseconds that grows with every message of a
    device, so no two of its messages share a (device, key, ts) row. Client ids are
    ``{client_prefix}{first + i}``. ``tls``: connect over TLS (mqtts); a device whose token
    is empty connects with no user name, its client certificate (``tls.certificates``) saying
    who it is.

    ``subdevices`` > 0: each connection is a gateway device's, publishing for that many
    sub-devices of its own (ThingsBoard's gateway API, simulator.mqtt_gateway; ``topic``
    should be v1/gateway/telemetry), ``devices_per_message`` of them in each message, each
    with ``body``; sub-device j of connection i is named ``{client_prefix}{first + i}-{j}``.
    """

    tokens: tuple[str, ...]
    body: bytes = DEFAULT_TELEMETRY
    topic: str = MQTT_TELEMETRY_TOPIC
    qos: int = 1
    inflight: int = 10
    version: int = 4
    connect_rate: float = 1_000.0
    keepalive: int = 60
    timestamps: bool = False
    client_prefix: str = "sim-"
    first: int = 0
    source_hosts: tuple[str, ...] = ()
    tls: MqttTls | None = None
    subdevices: int = 0
    devices_per_message: int = 1
    # Huawei IoTDA's dialect when set: each token is a device id with this secret (simulator.iotda).
    iotda_secret: str = ""

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise ValueError(f"QoS 0 or 1, not {self.qos}")
        if self.version not in (4, 5):
            raise ValueError(f"MQTT protocol level 4 (3.1.1) or 5, not {self.version}")
        if not 1 <= self.inflight <= 65_535:
            raise ValueError("inflight must be 1..65535")
        if self.subdevices < 0 or (self.subdevices and not 1 <= self.devices_per_message <= self.subdevices):
            raise ValueError(f"sub-devices in a message must be 1..{self.subdevices} (a gateway's), "
                             f"not {self.devices_per_message}")

    @property
    def datapoints(self) -> int:
        """Data points a message: the body's, once for each device the message speaks for."""
        return TelemetrySpec((), self.body).datapoints * (self.devices_per_message if self.subdevices else 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "mqtt", "tokens": list(self.tokens), "body": self.body.decode(), "topic": self.topic,
            "qos": self.qos, "inflight": self.inflight, "version": self.version, "connect_rate": self.connect_rate,
            "keepalive": self.keepalive, "timestamps": self.timestamps, "client_prefix": self.client_prefix,
            "first": self.first, "source_hosts": list(self.source_hosts),
            "tls": self.tls.to_json() if self.tls else None, "subdevices": self.subdevices,
            "devices_per_message": self.devices_per_message, "iotda_secret": self.iotda_secret,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MqttTelemetrySpec:
        return cls(
            tuple(data["tokens"]), data["body"].encode(), data["topic"], int(data["qos"]), int(data["inflight"]),
            int(data["version"]), float(data["connect_rate"]), int(data["keepalive"]), bool(data["timestamps"]),
            data["client_prefix"], int(data["first"]), tuple(data["source_hosts"]),
            MqttTls.from_json(data.get("tls")), int(data.get("subdevices", 0)),
            int(data.get("devices_per_message", 1)), str(data.get("iotda_secret", "")),
        )

    def split(self, parts: int) -> list[MqttTelemetrySpec]:
        """Disjoint shares of the devices, each connecting at its share of the connect rate."""
        size = -(-len(self.tokens) // parts)
        return [
            replace(
                self, tokens=self.tokens[i : i + size], first=self.first + i,
                connect_rate=self.connect_rate * len(self.tokens[i : i + size]) / len(self.tokens),
                tls=self.tls.share(i, i + size) if self.tls else None,
            )
            for i in range(0, len(self.tokens), size)
        ]


WorkloadSpec = TelemetrySpec | ProvisionSpec | MqttTelemetrySpec


class TelemetryWorkload:
    """Pre-encoded requests: writing one is the generator's whole cost per request."""

    def __init__(self, spec: TelemetrySpec, host: str) -> None:
        self._requests = [encode_post(host, f"/api/v1/{token}/telemetry", spec.body) for token in spec.tokens]
        self._datapoints = spec.datapoints

    @property
    def datapoints_per_request(self) -> int:
        return self._datapoints

    @property
    def devices(self) -> int:
        return len(self._requests)

    def request(self, index: int) -> bytes:
        return self._requests[index]

    def check(self, index: int, status: int, body: bytes) -> str | None:
        return None if status == 200 else status_error(status)


class ProvisionWorkload:
    """Every request names a new device; the access tokens handed back are kept."""

    def __init__(self, spec: ProvisionSpec, host: str, *, keep_tokens: bool = False) -> None:
        self._spec = spec
        self._host = host
        self._sent = 0
        self._keep = keep_tokens
        self.tokens: list[str] = []

    @property
    def datapoints_per_request(self) -> int:
        return 0

    def request(self, index: int) -> bytes:
        self._sent += 1
        request: dict[str, Any] = {
            "deviceName": f"{self._spec.prefix}{self._sent}",
            "provisionDeviceKey": self._spec.provision_key,
            "provisionDeviceSecret": self._spec.provision_secret,
        }
        if self._spec.gateway:
            request["gateway"] = True
        body = orjson.dumps(request)
        return encode_post(self._host, "/api/v1/provision", body)

    def check(self, index: int, status: int, body: bytes) -> str | None:
        if status != 200:
            return status_error(status)
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "provision: the answer is not JSON"
        if not isinstance(reply, dict) or reply.get("status") != "SUCCESS":
            return f"provision: {reply.get('status') if isinstance(reply, dict) else 'bad answer'}"
        if self._keep:
            self.tokens.append(str(reply["credentialsValue"]))
        return None
