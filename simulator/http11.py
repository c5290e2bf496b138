"""A minimal HTTP/1.1 client for load generation: pre-encoded requests, one keep-alive
connection per simulated device, at most one request in flight on it.

aiohttp's client spends tens of microseconds per request in Python; this one is
an ``asyncio.Protocol`` whose whole per-request work is one ``transport.write``
of ready bytes and a parse of the status line and framing headers, so one
process can keep a server on the other core busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol, cast

_MAX_HEAD = 65_536
_NO_BODY = frozenset({204, 304})


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response this client understands."""


def encode_post(host: str, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    """A complete POST request with Content-Length, ready to write."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body


class ResponseParser:
    """Incremental parser of a stream of HTTP/1.x responses.

    Bodies framed by Content-Length, chunked transfer coding or (without either)
    the end of the connection; interim 1xx responses are skipped. Calls
    ``on_response(status, body)`` once per final response.
    """

    __slots__ = ("_body", "_buffer", "_chunked", "_on_response", "_remaining", "_status", "_until_close", "closing")

    def __init__(self, on_response: Callable[[int, bytes], None]) -> None:
        self._on_response = on_response
        self._buffer = bytearray()
        self._status = 0  # 0: waiting for a head
        self._remaining = 0
        self._chunked = False
        self._until_close = False
        self._body = bytearray()
        self.closing = False  # the last response said Connection: close

    def feed(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while buf:
            if not self._status:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise ProtocolError("response head too long")
                    return
                self._start(bytes(buf[:end]))
                del buf[: end + 4]
                if not self._status:  # an interim 1xx response
                    continue
            if self._chunked:
                if not self._read_chunks(buf):
                    return
            elif self._until_close:
                self._body += buf
                buf.clear()
                return
            else:
                n = self._remaining
                if len(buf) < n:
                    return
                body = bytes(buf[:n])
                del buf[:n]
                self._deliver(body)

    def feed_eof(self) -> None:
        """The server closed the connection: ends a close-delimited body."""
        if self._status and self._until_close:
            body = bytes(self._body)
            self._body.clear()
            self._deliver(body)

    @property
    def idle(self) -> bool:
        """No response is partly received."""
        return not self._status and not self._buffer

    def _start(self, head: bytes) -> None:
        if not head.startswith(b"HTTP/1.") or len(head) < 12 or head[8:9] != b" ":
            raise ProtocolError(f"not an HTTP/1.x status line: {head[:40]!r}")
        try:
            status = int(head[9:12])
        except ValueError:
            raise ProtocolError(f"bad status code: {head[:40]!r}") from None
        if 100 <= status < 200:
            return
        lower = head.lower()
        self.closing = b"\r\nconnection: close" in lower or (
            head[5:8] == b"1.0" and b"\r\nconnection: keep-alive" not in lower
        )
        self._chunked = self._until_close = False
        self._remaining = 0
        if status not in _NO_BODY:
            at = lower.find(b"\r\ntransfer-encoding:")
            if at >= 0 and b"chunked" in _header_value(lower, at + 20):
                self._chunked = True
            else:
                at = lower.find(b"\r\ncontent-length:")
                if at >= 0:
                    try:
                        self._remaining = int(_header_value(lower, at + 17))
                    except ValueError:
                        raise ProtocolError("bad Content-Length") from None
                    if self._remaining < 0:
                        raise ProtocolError("negative Content-Length")
                else:
                    self._until_close = True
        self._status = status

    def _read_chunks(self, buf: bytearray) -> bool:
        """Consume chunks from ``buf``; True once the last chunk and trailers are read."""
        while True:
            if self._remaining > 0:  # inside a chunk's data (plus its CRLF)
                if len(buf) < self._remaining:
                    return False
                self._body += buf[: self._remaining - 2]
                del buf[: self._remaining]
                self._remaining = 0
            end = buf.find(b"\r\n")
            if end < 0:
                return False
            if self._remaining < 0:  # in the trailers after the last chunk
                del buf[: end + 2]
                if end == 0:
                    body = bytes(self._body)
                    self._body.clear()
                    self._remaining = 0
                    self._deliver(body)
                    return True
                continue
            try:
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError("bad chunk size") from None
            del buf[: end + 2]
            self._remaining = size + 2 if size else -1

    def _deliver(self, body: bytes) -> None:
        status = self._status
        self._status = 0
        self._on_response(status, body)


def _header_value(lower_head: bytes, start: int) -> bytes:
    end = lower_head.find(b"\r\n", start)
    return lower_head[start : end if end >= 0 else len(lower_head)].strip()


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
