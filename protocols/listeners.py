"""A TCP device listener's socket, the same for HTTP and MQTT, bound with SO_REUSEPORT so that
`serve --workers N` shares every port among its workers (aiocoap binds CoAP's UDP socket with
SO_REUSEPORT itself)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

# Devices reconnect in storms: a deep accept backlog. A TLS handshake not done within
# ``tls_handshake_seconds`` of the accept (a client that sends nothing, or dribbles its
# ClientHello) is abandoned and the socket closed, before any protocol object exists.
_BACKLOG = 4096


async def listen(
    factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, ssl_context: ssl.SSLContext | None,
    tls_handshake_seconds: float = 10.0,
) -> tuple[asyncio.Server, int]:
    """The server and the port it really bound (``port`` may be 0 for any)."""
    server = await asyncio.get_running_loop().create_server(
        factory, host, port, ssl=ssl_context, backlog=_BACKLOG, reuse_port=True,
        ssl_handshake_timeout=tls_handshake_seconds if ssl_context else None,
    )
    return server, server.sockets[0].getsockname()[1]
