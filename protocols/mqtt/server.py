"""The MQTT listeners (plain and TLS) and the sessions they hold."""

from __future__ import annotations

import asyncio
import ssl

from fleetgate.core import metrics
from fleetgate.core.device_service import DeviceService
from fleetgate.core.tasks import OwnedTasks
from fleetgate.protocols.listeners import listen
from fleetgate.protocols.mqtt.context import MqttContext, MqttSettings
from fleetgate.protocols.mqtt.session import PROTOCOL, MqttSession

__all__ = ["MqttServer", "MqttSettings"]


class MqttServer:
    """Owns its listeners, its sessions and the tasks they run; ``stop_accepting`` closes
    the sockets, ``close`` tells MQTT 5 clients the server is shutting down and closes all."""

    def __init__(self, service: DeviceService, settings: MqttSettings) -> None:
        self._sessions: set[MqttSession] = metrics.CountedSet(PROTOCOL)
        self._tasks = OwnedTasks()
        self._context = MqttContext(service, settings, self._tasks.spawn, self._sessions)
        self._tls_handshake_seconds = settings.tls_handshake_seconds
        self._refused = service.certificate_refused
        self._servers: list[asyncio.Server] = []

    @property
    def serving(self) -> bool:
        """Whether every listener started accepts connections."""
        return all(server.is_serving() for server in self._servers)


    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        server, bound = await listen(
            lambda: MqttSession(self._context), host, port, ssl_context, self._tls_handshake_seconds,
            refused=self._refused, spawn=self._tasks.spawn,
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
