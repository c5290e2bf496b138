"""What every MQTT session shares: the device service, the settings, and its owner's task spawner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleetgate.core.device_service import DeviceService
from fleetgate.core.operations import Operation
from fleetgate.protocols.mqtt.connect import Limits

if TYPE_CHECKING:
    from fleetgate.protocols.mqtt.session import MqttSession


@dataclass(frozen=True, slots=True)
class MqttSettings:
    limits: Limits
    connect_timeout: float
    provision_close_after: float
    max_connections: int
    tls_handshake_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class MqttContext:
    service: DeviceService
    settings: MqttSettings
    spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    sessions: set[MqttSession]
    # The service's method for each operation, bound once rather than looked up per message.
    handlers: dict[Operation, Callable[..., Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.handlers.update((operation, self.service.handler(operation)) for operation in Operation)
