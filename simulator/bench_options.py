"""What ``iot-gateway bench`` was asked to do, as the scenarios read it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# The count bound of every run: no server here answers this many requests (messages) a second.
_MAX_RATE = 200_000
_MAX_MQTT_RATE = 1_000_000


@dataclass(frozen=True, slots=True)
class BenchOptions:
    scenario: str
    devices: int = 1_000
    duration: float = 10.0
    warmup: float = 2.0
    rate: float | None = None
    connections: int | None = None  # provision: 100; idle-connections: 50,000
    load_processes: int = 1
    json: bool = False
    target: Literal["gateway", "mosquitto"] = "gateway"
    qos: int = 1
    inflight: int = 10
    mqtt_version: str = "3.1.1"
    connect_rate: float = 1_000.0
    timestamps: bool = False
    requests: int = 1_000_000  # coap: the memory run's requests (0: none)
    memory_seconds: float = 900.0  # coap: the memory run's time cap
    gateways: int = 0  # mqtt: > 0, the gateway-API scenario (simulator.bench_mqtt_gateway)
    subdevices: int = 100  # mqtt --gateways: sub-devices behind each gateway
    devices_per_message: int = 10  # mqtt --gateways: sub-devices in each message
    gateway_inflight: int | None = None  # mqtt --gateways: a gateway connection's window (see gateway_window)
    iotda: bool = False  # mqtt: IoTDA's properties/report against ThingsBoard's telemetry (bench_mqtt_iotda)
    forwarding: bool = False  # mqtt: with and without one HTTP forwarding action (bench_forwarding)
    forwarding_in_process: bool = False  # mqtt --forwarding: delivery in the gateway process, not a forwarder's
    package_bytes: int = 1024 * 1024  # ota: the package the devices download
    chunk_bytes: int = 16 * 1024  # ota: the chunk size they ask for
    days: int = 30  # query: days of 1-minute data the --devices devices send
    fleet_devices: int = 10_000  # query: devices in the fleet (the first --devices with history)
    load_seconds: float = 900.0  # query: time cap of loading the data set
    queries: int = 200  # query: times each query is timed

    @property
    def max_requests(self) -> int:
        return math.ceil((self.warmup + self.duration) * _MAX_RATE)

    @property
    def max_messages(self) -> int:
        return math.ceil((self.warmup + self.duration) * _MAX_MQTT_RATE)

    @property
    def gateway_window(self) -> int:
        """Unacknowledged messages a gateway connection may have: by default as many as keep the
        data points in flight of the direct devices' run, so both offer the server the same load."""
        if self.gateway_inflight is not None:
            return self.gateway_inflight
        per_gateway = self.devices * self.inflight / (max(1, self.gateways) * self.devices_per_message)
        return min(65_535, max(1, math.ceil(per_gateway)))

    @property
    def connection_count(self) -> int:
        if self.connections is not None:
            return self.connections
        return 50_000 if self.scenario == "idle-connections" else 100

    @property
    def needs_database(self) -> bool:
        return not (self.scenario in ("mqtt", "idle-connections") and self.target == "mosquitto")
