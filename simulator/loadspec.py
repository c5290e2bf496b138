"""What one load run is: a frozen, JSON-able spec a generator process is handed.

The same for every protocol: the workload spec (simulator.workloads) says
what devices send and over what; the rest says where, how long, and whether
at maximum rate (closed loop) or on a timetable (open loop).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from fleetgate.simulator.coap_packets import CoapTelemetrySpec
from fleetgate.simulator.workloads import MqttTelemetrySpec, ProvisionSpec, TelemetrySpec, WorkloadSpec

_SETUP_TIMEOUT = 60.0
_SUBDEVICES_CREATED_PER_S = 100.0  # a pessimistic pace, for the deadline only


def workload_from_json(data: dict[str, Any]) -> WorkloadSpec | CoapTelemetrySpec:
    """The workload of a spec handed to a generator process, by its ``kind``."""
    match data["kind"]:
        case "telemetry":
            return TelemetrySpec(tuple(data["tokens"]), data["body"].encode())
        case "provision":
            return ProvisionSpec(data["key"], data["secret"], data["prefix"], bool(data.get("gateway", False)))
        case "mqtt":
            return MqttTelemetrySpec.from_json(data)
        case "coap":
            return CoapTelemetrySpec.from_json(data)
    raise ValueError(f"unknown workload {data['kind']!r}")


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str
    port: int
    workload: WorkloadSpec | CoapTelemetrySpec
    connections: int
    mode: Literal["closed", "open", "idle"] = "closed"
    warmup: float = 2.0
    duration: float = 10.0
    rate: float | None = None
    max_requests: int = 10_000_000
    drain_timeout: float = 10.0
    timeline: bool = False  # latencies a second in the result (simulator.timeline)
    progress_interval: float = 0.0  # > 0: a generator process reports its count this often

    @property
    def setup_timeout(self) -> float:
        """The longest connecting may take (MQTT devices connect on a ramp; a gateway's first
        messages create its sub-devices, before the clock starts)."""
        workload = self.workload
        if not isinstance(workload, MqttTelemetrySpec):
            return _SETUP_TIMEOUT
        ramp = len(workload.tokens) / workload.connect_rate
        return _SETUP_TIMEOUT + ramp + len(workload.tokens) * workload.subdevices / _SUBDEVICES_CREATED_PER_S

    @property
    def deadline(self) -> float:
        """The longest the run may take once started."""
        return self.warmup + self.duration + self.drain_timeout

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host, "port": self.port, "workload": self.workload.to_json(),
            "connections": self.connections, "mode": self.mode, "warmup": self.warmup, "duration": self.duration,
            "rate": self.rate, "max_requests": self.max_requests, "drain_timeout": self.drain_timeout,
            "timeline": self.timeline, "progress_interval": self.progress_interval,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadSpec:
        return cls(
            host=data["host"], port=int(data["port"]), workload=workload_from_json(data["workload"]),
            connections=int(data["connections"]), mode=data["mode"], warmup=float(data["warmup"]),
            duration=float(data["duration"]), rate=data["rate"], max_requests=int(data["max_requests"]),
            drain_timeout=float(data["drain_timeout"]), timeline=bool(data.get("timeline", False)),
            progress_interval=float(data.get("progress_interval", 0.0)),
        )

    def split(self, parts: int) -> list[LoadSpec]:
        """The same load shared by ``parts`` generators: devices, connections, rate and count divided."""
        if parts <= 1:
            return [self]
        shares: list[tuple[WorkloadSpec, int]]
        match self.workload:
            case TelemetrySpec() | MqttTelemetrySpec() as telemetry:  # one connection per device
                shares = [(share, len(share.tokens)) for share in telemetry.split(parts)]
            case CoapTelemetrySpec() as coap:  # connections: its UDP sockets
                shares = [(share, share.sockets) for share in coap.split(parts)]
            case ProvisionSpec() as provision:
                parts = min(parts, self.connections)
                shares = [
                    (replace(provision, prefix=f"{provision.prefix}{i}-"),
                     self.connections // parts + (1 if i < self.connections % parts else 0))
                    for i in range(parts)
                ]
        return [
            replace(
                self, workload=workload, connections=connections,
                rate=self.rate * connections / self.connections if self.rate else None,
                max_requests=max(1, self.max_requests * connections // self.connections),
            )
            for workload, connections in shares
        ]
