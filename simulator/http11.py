"""A minimal HTTP/1.1 client for load generation: pre-encoded requests, one keep-alive
connection per simulated device, at most one request in flight on it.

aiohttp's client spends tens of microseconds per request in Python; this one is
an ``asyncio.Protocol`` whose whole per-request work is one ``transport.write``
of ready bytes and httptools' parse of the response (1.1 to 1.5 microseconds for
aiohttp's here, against 2.4 to 3.0 for the hand-written parser it replaced), so one
process can keep a server on the other core busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol, cast

import httptools

_MAX_HEAD = 65_536


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response this client understands."""


def encode_post(host: str, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    """A complete POST request with Content-Length, ready to write."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body


class ResponseParser:
    """Incremental parser of a stream of HTTP/1.x responses, over httptools (llhttp).

    Bodies framed by Content-Length, chunked transfer coding or (without either)
    the end of the connection; interim 1xx responses are skipped. Calls
    ``on_response(status, body)`` once per final response.
    """

    __slots__ = ("_body", "_framed", "_head_bytes", "_in_head", "_in_message", "_on_response", "_parser", "closing")

    def __init__(self, on_response: Callable[[int, bytes], None]) -> None:
        self._on_response = on_response
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self._in_message = False
        self._in_head = False
        self._head_bytes = 0
        self._framed = False  # Content-Length or chunked: the end of the connection does not end the body
        self.closing = False  # the last response said Connection: close (or is ended by it)

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            raise ProtocolError(str(exc) or type(exc).__name__) from None
        if self._in_head:
            # llhttp sets no bound on a head: this one does, counting whole reads (and so
            # at most one read's worth too early, for a head sharing a read with a body).
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD:
                raise ProtocolError("response head too long")

    def feed_eof(self) -> None:
        """The server closed the connection: ends a close-delimited body."""
        if self._in_message and not self._in_head and not self._framed:
            self._complete()

    @property
    def idle(self) -> bool:
        """No response is partly received."""
        return not self._in_message

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = True
        self._head_bytes = 0
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only the two framing headers matter, and only for feed_eof; the length test keeps
        # the others (Date, Server, Content-Type...) to one comparison.
        if len(name) == 14 and name.lower() == b"content-length":
            self._framed = True
        elif len(name) == 17 and name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            self._framed = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._parser.get_status_code() >= 200:
            self.closing = not self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # an interim 1xx response
            self._in_message = False
            return
        self._complete()

    def _complete(self) -> None:
        self._in_message = False
        body = b"".join(self._body) if self._body else b""
        self._body.clear()
        self._on_response(self._parser.get_status_code(), body)


class ConnectionOwner(Protocol):
    """Who drives a set of connections: told of every response and every close."""

    def response(self, conn: HttpConnection, status: int, body: bytes) -> None: ...

    def closed(self, conn: HttpConnection, reason: str, in_flight: bool) -> None: ...


class _Unowned:
    def response(self, conn: HttpConnection, status: int, body: bytes) -> None:
        conn.abort()

    def closed(self, conn: HttpConnection, reason: str, in_flight: bool) -> None:
        pass


UNOWNED: ConnectionOwner = _Unowned()


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; its owner decides what to send next.

    ``started_ns`` is when the request in flight counts as started (its send
    time, or its scheduled time in an open loop); ``busy`` that one is in flight.
    """

    __slots__ = ("_open", "_parser", "_transport", "busy", "index", "owner", "started_ns")

    def __init__(self, index: int) -> None:
        self.index = index
        self.owner: ConnectionOwner = UNOWNED
        self.started_ns = 0
        self.busy = False
        self._transport: asyncio.Transport | None = None
        self._parser = ResponseParser(self._on_response)
        self._open = False

    @property
    def open(self) -> bool:
        return self._open

    def send(self, request: bytes, started_ns: int) -> None:
        assert self._transport is not None
        self.started_ns = started_ns
        self.busy = True
        self._transport.write(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a registered subclass
        self._open = True

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
        except ProtocolError as exc:
            self._lose(f"bad response: {exc}")

    def eof_received(self) -> bool:
        self._parser.feed_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._open:
            self._lose(f"connection lost: {type(exc).__name__}" if exc else "connection closed by server")

    def _on_response(self, status: int, body: bytes) -> None:
        self.busy = False
        self.owner.response(self, status, body)
        if self._parser.closing and self._open:
            self._lose("connection closed by server")

    def _lose(self, reason: str) -> None:
        """Close for good and tell the owner, once, whether a request was in flight."""
        self._open = False
        in_flight = self.busy
        self.busy = False
        if self._transport is not None:
            self._transport.abort()
        self.owner.closed(self, reason, in_flight)


async def connect_all(host: str, port: int, count: int, concurrency: int = 200) -> list[HttpConnection]:
    """Open ``count`` connections, at most ``concurrency`` handshakes at a time.

    All or nothing: if one fails, the others are closed and the error raised.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    connections: list[HttpConnection] = []

    async def one(index: int) -> None:
        async with gate:
            _, protocol = await loop.create_connection(lambda: HttpConnection(index), host, port)
            connections.append(protocol)

    try:
        async with asyncio.TaskGroup() as group:
            for index in range(count):
                group.create_task(one(index))
    except BaseException:
        close_all(connections)
        raise
    connections.sort(key=lambda c: c.index)
    return connections


def close_all(connections: Sequence[HttpConnection]) -> None:
    for conn in connections:
        conn.close()
