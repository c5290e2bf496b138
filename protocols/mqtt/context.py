"""What every MQTT session shares: the core services, the limits, and its owner's task spawner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleetgate.core.admission import ConnectionGate
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.downlink import Downlink
from fleetgate.core.ingest import IngestPipeline
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.uplink import Uplink
from fleetgate.protocols.mqtt.connect import Limits

if TYPE_CHECKING:
    from fleetgate.protocols.mqtt.session import MqttSession


@dataclass(frozen=True, slots=True)
class MqttContext:
    """What every session shares: the core services, the limits, and its owner's task spawner."""

    auth: DeviceAuthenticator
    uplink: Uplink
    provisioning: ProvisioningService
    downlink: Downlink
    pipeline: IngestPipeline
    limits: Limits
    connect_timeout: float
    provision_close_after: float
    max_connections: int
    spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]
    sessions: set[MqttSession]
    gate: ConnectionGate | None = None
