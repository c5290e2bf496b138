"""A TCP device listener's socket, the same for HTTP and MQTT, bound with SO_REUSEPORT so that
`serve --workers N` shares every port among its workers (aiocoap binds CoAP's UDP socket with
SO_REUSEPORT itself).

A TLS listener that counts refused certificates (``refused``) does its handshakes itself, with
``loop.start_tls`` on each accepted connection, rather than handing the context to
``create_server``: there the loop drops a failed handshake with no word to anyone, and the
peer's address is lost with it. A certificate refused in the handshake (an unknown CA, an
expired or revoked certificate, none where one is required) is an authentication failure
of that address, like a wrong token: ``auth_failures_per_address`` of them block it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, cast

from fleetgate.core.admission import address_of

# Devices reconnect in storms: a deep accept backlog. A TLS handshake not done within
# ``tls_handshake_seconds`` of the accept (a client that sends nothing, or dribbles its
# ClientHello) is abandoned and the socket closed, before any protocol object exists.
_BACKLOG = 4096
# OpenSSL's reasons for a client that sent no certificate to a context requiring one.
_NO_CERTIFICATE = frozenset({"PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"})

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


async def listen(
    factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, ssl_context: ssl.SSLContext | None,
    tls_handshake_seconds: float = 10.0, *, refused: Callable[[str], None] | None = None,
    spawn: Spawn | None = None,
) -> tuple[asyncio.Server, int]:
    """The server and the port it really bound (``port`` may be 0 for any). With a TLS context,
    ``refused`` (told the address of each certificate refused in a handshake) and ``spawn``
    (which owns the handshakes' tasks), the handshakes are done here."""
    loop = asyncio.get_running_loop()
    if ssl_context is not None and refused is not None and spawn is not None:
        handshakes = _Handshakes(ssl_context, tls_handshake_seconds, refused, spawn)
        server = await loop.create_server(
            lambda: _Handshake(factory(), handshakes), host, port, backlog=_BACKLOG, reuse_port=True)
    else:
        server = await loop.create_server(
            factory, host, port, ssl=ssl_context, backlog=_BACKLOG, reuse_port=True,
            ssl_handshake_timeout=tls_handshake_seconds if ssl_context else None,
        )
    return server, server.sockets[0].getsockname()[1]


class _Handshakes:
    """What every handshake of one listener shares."""

    __slots__ = ("context", "timeout", "refused", "spawn")

    def __init__(self, context: ssl.SSLContext, timeout: float, refused: Callable[[str], None], spawn: Spawn) -> None:
        self.context, self.timeout, self.refused, self.spawn = context, timeout, refused, spawn


class _Handshake(asyncio.Protocol):
    """An accepted connection until its TLS handshake is done; then the application's protocol
    is handed the TLS transport, as ``create_server(ssl=...)`` would have."""

    __slots__ = ("_app", "_handshakes", "_task", "_early")

    def __init__(self, app: asyncio.BaseProtocol, handshakes: _Handshakes) -> None:
        self._app = app
        self._handshakes = handshakes
        self._task: asyncio.Task[None] | None = None
        self._early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        # Nothing is read before start_tls takes the socket over: the ClientHello is its.
        transport.pause_reading()
        self._task = self._handshakes.spawn(self._handshake(transport))

    def data_received(self, data: bytes) -> None:
        # uvloop may read before connection_made paused the socket: the ClientHello, kept
        # for the TLS protocol (the client sends nothing more until the server answers).
        self._early.append(bytes(data))

    def connection_lost(self, exc: Exception | None) -> None:
        # Before start_tls took over (after, the TLS protocol is told instead).
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _handshake(self, transport: asyncio.Transport) -> None:
        handshakes = self._handshakes
        address = address_of(transport.get_extra_info("peername"))
        gap = _Gap()
        loop = asyncio.get_running_loop()
        try:
            starting = loop.create_task(loop.start_tls(
                transport, gap, handshakes.context, server_side=True, ssl_handshake_timeout=handshakes.timeout))
            try:
                # One turn: start_tls puts its TLS protocol on the transport and schedules its
                # connection_made; bytes read before that are handed to it right after.
                await asyncio.sleep(0)
                if self._early:
                    loop.call_soon(_feed, transport.get_protocol(), b"".join(self._early))
                    self._early.clear()
                tls = await starting
            finally:
                if not starting.done():
                    starting.cancel()
        except ssl.SSLCertVerificationError:
            handshakes.refused(address)
            _abort(transport)
            return
        except ssl.SSLError as exc:
            if exc.reason in _NO_CERTIFICATE:
                handshakes.refused(address)
            _abort(transport)
            return
        except (OSError, TimeoutError, RuntimeError):
            # The client left, dribbled past the deadline, or the transport closed meanwhile.
            _abort(transport)
            return
        except asyncio.CancelledError:
            _abort(transport)
            raise
        if tls is None:  # the connection was lost as the handshake ended
            _abort(transport)
            return
        tls.set_protocol(self._app)  # type: ignore[arg-type]
        self._app.connection_made(tls)
        gap.hand_over(self._app)


class _Gap(asyncio.Protocol):
    """The TLS transport's protocol between the end of the handshake and the application's
    connection_made: the TLS layer reads on at once (a device sends its CONNECT or request
    right after its Finished), so what comes in meanwhile is held, then handed over."""

    __slots__ = ("_held", "_eof", "_lost")

    def __init__(self) -> None:
        self._held: list[bytes] = []
        self._eof = False
        self._lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        self._held.append(bytes(data))

    def eof_received(self) -> bool:
        self._eof = True
        return True  # the application says, once it is told

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = (exc,)

    def hand_over(self, app: asyncio.BaseProtocol) -> None:
        for data in self._held:
            _feed(app, data)
        self._held.clear()
        if self._eof and hasattr(app, "eof_received"):
            app.eof_received()
        if self._lost is not None:
            app.connection_lost(self._lost[0])


def _feed(app: asyncio.BaseProtocol, data: bytes) -> None:
    # Duck-typed: uvloop's protocols are buffered without subclassing asyncio.BufferedProtocol.
    if hasattr(app, "get_buffer"):
        view = memoryview(data)
        while view:
            buffer = app.get_buffer(len(view))  # type: ignore[attr-defined]
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            app.buffer_updated(n)  # type: ignore[attr-defined]
            view = view[n:]
    elif isinstance(app, asyncio.Protocol):
        app.data_received(data)


def _abort(transport: asyncio.Transport) -> None:
    with contextlib.suppress(Exception):
        transport.abort()
