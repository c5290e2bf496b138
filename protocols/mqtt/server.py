"""The MQTT listeners (plain and TLS) and the sessions they hold."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from fleetgate.core import metrics
from fleetgate.core.admission import ConnectionGate
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.downlink import Downlink
from fleetgate.core.ingest import IngestPipeline
from fleetgate.core.tasks import OwnedTasks
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.uplink import Uplink
from fleetgate.protocols.listeners import listen
from fleetgate.protocols.mqtt.connect import Limits
from fleetgate.protocols.mqtt.context import MqttContext
from fleetgate.protocols.mqtt.session import PROTOCOL, MqttSession


@dataclass(frozen=True, slots=True)
class MqttServices:
    auth: DeviceAuthenticator
    uplink: Uplink
    provisioning: ProvisioningService
    downlink: Downlink
    pipeline: IngestPipeline


@dataclass(frozen=True, slots=True)
class MqttSettings:
    limits: Limits
    connect_timeout: float
    provision_close_after: float
    max_connections: int
    tls_handshake_seconds: float = 10.0


class MqttServer:
    """Owns its listeners, its sessions and the tasks they run; ``stop_accepting`` closes
    the sockets, ``close`` tells MQTT 5 clients the server is shutting down and closes all."""

    def __init__(self, services: MqttServices, settings: MqttSettings, gate: ConnectionGate | None = None) -> None:
        self._sessions: set[MqttSession] = metrics.CountedSet(PROTOCOL)
        self._tasks = OwnedTasks()
        self._context = MqttContext(
            auth=services.auth, uplink=services.uplink, provisioning=services.provisioning,
            downlink=services.downlink, pipeline=services.pipeline, limits=settings.limits,
            connect_timeout=settings.connect_timeout, provision_close_after=settings.provision_close_after,
            max_connections=settings.max_connections, spawn=self._tasks.spawn, sessions=self._sessions,
            gate=gate,
        )
        self._tls_handshake_seconds = settings.tls_handshake_seconds
        self._servers: list[asyncio.Server] = []

    @property
    def serving(self) -> bool:
        """Whether every listener started accepts connections."""
        return all(server.is_serving() for server in self._servers)

    @property
    def connections(self) -> int:
        return len(self._sessions)

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        server, bound = await listen(
            lambda: MqttSession(self._context), host, port, ssl_context, self._tls_handshake_seconds
        )
        self._servers.append(server)
        return bound

    async def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def close(self) -> None:
        for session in list(self._sessions):
            session.shutdown()
        await self._tasks.finish()
