"""The device API's listeners: plain and TLS, one connection registry, the handler tasks."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from fleetgate.core import metrics
from fleetgate.core.tasks import OwnedTasks
from fleetgate.protocols.http.connection import DeviceApiPort, DeviceHttpConnection, HttpLimits
from fleetgate.protocols.listeners import listen


class DeviceHttpServer:
    """Owns its servers, its connections and the tasks its handlers run; ``stop_accepting``
    closes the sockets, ``close`` waits for in-flight answers and closes the connections."""

    def __init__(
        self, api: DeviceApiPort, limits: HttpLimits, tls_handshake_seconds: float = 10.0,
        certificate_refused: Callable[[str], None] | None = None,
    ) -> None:
        self._api = api
        # Told the address of each client certificate a TLS handshake refuses.
        self._certificate_refused = certificate_refused
        self._limits = limits
        self._tls_handshake_seconds = tls_handshake_seconds
        self._servers: list[asyncio.Server] = []
        self._connections: set[DeviceHttpConnection] = metrics.CountedSet("http")
        self._tasks = OwnedTasks()

    @property
    def serving(self) -> bool:
        """Whether every listener started accepts connections."""
        return all(server.is_serving() for server in self._servers)


    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        server, bound = await listen(self._connection, host, port, ssl_context, self._tls_handshake_seconds,
                                     refused=self._certificate_refused, spawn=self._tasks.spawn)
        self._servers.append(server)
        return bound

    def _connection(self) -> DeviceHttpConnection:
        return DeviceHttpConnection(self._api, self._limits, self._tasks.spawn, self._connections)

    async def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Answer the long polls, let running handlers finish (within ``timeout``), then close every
        connection."""
        self._api.stopping()
        await self._tasks.finish(timeout)
        for connection in list(self._connections):
            connection.close_when_idle()
        for server in self._servers:
            await server.wait_closed()
