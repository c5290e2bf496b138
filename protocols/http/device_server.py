"""The device API's listeners: plain and TLS, one connection registry, the handler tasks."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine
from typing import Any

from protocols.http.connection import DeviceApiPort, DeviceHttpConnection, HttpLimits
from protocols.http.wire import Reply


class DeviceHttpServer:
    """Owns its servers, its connections and the tasks its handlers run; ``stop_accepting``
    closes the sockets, ``close`` waits for in-flight answers and closes the connections."""

    def __init__(self, api: DeviceApiPort, limits: HttpLimits) -> None:
        self._api = api
        self._limits = limits
        self._servers: list[asyncio.Server] = []
        self._connections: set[DeviceHttpConnection] = set()
        self._tasks: set[asyncio.Task[Reply]] = set()

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self._connection, host, port, ssl=ssl_context, backlog=4096, reuse_port=True,
            ssl_handshake_timeout=10 if ssl_context else None,
        )
        self._servers.append(server)
        sock: socket.socket = server.sockets[0]
        return sock.getsockname()[1]

    def _connection(self) -> DeviceHttpConnection:
        return DeviceHttpConnection(self._api, self._limits, self._spawn, self._connections)

    def _spawn(self, coro: Coroutine[Any, Any, Reply]) -> asyncio.Task[Reply]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Let running handlers finish (within ``timeout``), then close every connection."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for connection in list(self._connections):
            connection.close_when_idle()
        for server in self._servers:
            await server.wait_closed()
