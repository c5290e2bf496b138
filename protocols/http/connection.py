"""One device's HTTP/1.1 connection: httptools parses, the device API answers.

This is the project's own protocol rather than aiohttp's request machinery,
because at fleet connection counts aiohttp spends ~70 µs a request before a
handler runs (measured here: a bare aiohttp handler serves 13,000 requests a
second over 1,000 connections, a bare httptools protocol 73,000-138,000; see
docs/performance.md). A request whose answer is known at once, or
once its rows are stored, is answered from a callback: no task per request.

Responses leave in request order (HTTP/1.1 pipelining); a connection that
pipelines more than a handful of requests stops being read until they are
answered.

Abuse limits: a connection the :class:`~gateway.admission.ConnectionGate`
refuses gets 429 and is closed; a request head (line and headers) over
``max_head_bytes`` gets 414/431, a request not whole ``request_seconds`` after
its first byte (a client dribbling bytes) 408, and both close the connection;
a connection silent for ``idle_seconds`` is closed. One timer per connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import httptools

from fleetgate.core import metrics
from fleetgate.core.admission import address_of
from fleetgate.protocols.http.wire import Reply, encode

log = logging.getLogger(__name__)

# A coroutine may resolve to a future: a long poll, once its device is known, is waited on with a
# callback rather than by the task that authenticated it.
Later = Coroutine[Any, Any, Reply | asyncio.Future[Any]]
Outcome = Reply | asyncio.Future[Any] | Later
_MAX_PIPELINED = 16
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_body_bytes: int
    idle_seconds: float = 75.0
    request_seconds: float = 30.0
    max_head_bytes: int = 8_192


class DeviceApiPort:
    """What a connection asks of the device API (protocols.http.device_api.DeviceApi)."""

    def opened(self, address: str) -> Reply | None: ...
    def closed(self, address: str) -> None: ...
    def dispatch(
        self, method: bytes, target: bytes, body: bytes, remote: str, certificate: bytes | None = None
    ) -> Outcome: ...
    def oversize(self, method: bytes, target: bytes, remote: str = "") -> Outcome: ...
    def stored(self, future: asyncio.Future[Any]) -> Reply: ...
    def abandoned(self, future: asyncio.Future[Any]) -> None: ...
    def stopping(self) -> None: ...


class _Slot:
    __slots__ = ("data", "close", "waiting")

    def __init__(self, close: bool) -> None:
        self.data: bytes | None = None
        self.close = close
        self.waiting: asyncio.Future[Any] | None = None  # the future the answer comes from


class _Stop(Exception):
    """Raised from a parser callback to stop parsing: the request was refused, the connection closes."""


class DeviceHttpConnection(asyncio.Protocol):
    def __init__(
        self,
        api: DeviceApiPort,
        limits: HttpLimits,
        spawn: Callable[[Later], asyncio.Task[Reply | asyncio.Future[Any]]],
        registry: set[DeviceHttpConnection],
    ) -> None:
        self._api = api
        self._address: str | None = None  # counted against its address's limits while open
        self._limits = limits
        self._spawn = spawn
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._remote = ""
        self._certificate: bytes | None = None
        self._slots: deque[_Slot] = deque()
        self._paused = False
        self._closing = False
        self._idle: asyncio.TimerHandle | None = None
        self._active_at = 0.0
        self._url = b""
        self._body: list[bytes] = []
        self._size = 0
        self._expect_continue = False
        self._begun_at = 0.0  # when the request being read began; 0.0 between requests
        self._in_head = False
        self._fresh = False  # the request began in the chunk being parsed
        self._begins = 0  # requests begun in the chunk being parsed
        self._head_chunks = 0
        self._head_parsed = 0
        self._stopped = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        peer = self._transport.get_extra_info("peername")
        self._remote = f"{peer[0]}:{peer[1]}" if peer else ""
        address = address_of(peer)
        refusal = self._api.opened(address)
        if refusal is not None:
            self._transport.write(encode(refusal, keep_alive=False))
            self._closing = True
            self._transport.close()
            return
        self._address = address
        # The client certificate of an HTTPS connection: the device of /api/v1/me/...
        ssl_object = self._transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._certificate = ssl_object.getpeercert(binary_form=True)
        self._registry.add(self)
        self._active_at = self._loop.time()
        if self._limits.idle_seconds > 0:
            self._idle = self._loop.call_later(self._limits.idle_seconds, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        self._transport = None
        if self._address is not None:
            self._api.closed(self._address)
            self._address = None
        if self._idle is not None:
            self._idle.cancel()
        # Answers nobody will read: the device API stops waiting for them (a long poll is detached).
        for slot in self._slots:
            if slot.waiting is not None and not slot.waiting.done():
                self._api.abandoned(slot.waiting)

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return
        self._active_at = self._loop.time()
        self._fresh = False
        self._begins = 0
        between = not self._begun_at
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                raise
            return
        except httptools.HttpParserUpgrade:
            self._refuse(Reply.text(400, "Protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            metrics.BAD_REQUESTS.labels("http", "malformed").inc()
            self._refuse(Reply.text(400, f"Malformed HTTP request: {exc}"))
            return
        if self._in_head and (not self._fresh or (between and self._begins == 1)):
            # A head still incomplete after this whole chunk, which it began or continued:
            # every byte of the chunk was head.
            self._head_chunks += len(data)
            if self._head_chunks > self._limits.max_head_bytes:
                self._head_too_large(414 if not self._head_parsed else 431)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._size = 0
        self._expect_continue = False
        self._in_head = self._fresh = True
        self._begins += 1
        self._head_chunks = self._head_parsed = 0
        self._begun_at = now = self._loop.time()
        deadline = now + self._limits.request_seconds
        if self._idle is None or self._idle.when() > deadline:
            if self._idle is not None:
                self._idle.cancel()
            self._idle = self._loop.call_at(deadline, self._check_idle)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.max_head_bytes:
            self._head_too_large(414)
            raise _Stop()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + 4
        if len(self._url) + self._head_parsed > self._limits.max_head_bytes:
            self._head_too_large(431)
            raise _Stop()
        if len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        elif len(name) == 14 and name.lower() == b"content-length" and value.isdigit():
            if int(value) > self._limits.max_body_bytes:
                self._too_large()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._expect_continue and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._limits.max_body_bytes:
            self._too_large()
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._begun_at = 0.0
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        self._body = []
        slot = _Slot(close=not self._parser.should_keep_alive())
        self._slots.append(slot)
        self._answer(slot, self._api.dispatch(self._parser.get_method(), self._url, body, self._remote,
                                              self._certificate))
        if len(self._slots) > _MAX_PIPELINED and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    # answering

    def _too_large(self) -> None:
        """Answer 413 (or 401 for an unknown token) and close: the rest of the body is never read."""
        metrics.BAD_REQUESTS.labels("http", "oversize").inc()
        if self._transport is not None:
            self._transport.pause_reading()
        slot = _Slot(close=True)
        self._slots.append(slot)
        self._answer(slot, self._api.oversize(self._parser.get_method(), self._url, self._remote))
        raise _Stop()

    def _head_too_large(self, status: int) -> None:
        metrics.BAD_REQUESTS.labels("http", "head_too_large").inc()
        what = "request target" if status == 414 else "request head"
        self._refuse(Reply.text(status, f"The {what} is larger than {self._limits.max_head_bytes} bytes"))

    def _refuse(self, reply: Reply) -> None:
        """Answer (after any earlier answers) and close; nothing more is read."""
        self._stopped = True
        if self._transport is not None:
            self._transport.pause_reading()
        slot = _Slot(close=True)
        self._slots.append(slot)
        self._complete(slot, reply)

    def _answer(self, slot: _Slot, outcome: Outcome) -> None:
        if isinstance(outcome, Reply):
            self._complete(slot, outcome)
        elif isinstance(outcome, asyncio.Future):
            slot.waiting = outcome
            outcome.add_done_callback(lambda future: self._complete(slot, self._api.stored(future)))
        else:
            task = self._spawn(outcome)
            task.add_done_callback(lambda done: self._answered_later(slot, done))

    def _answered_later(self, slot: _Slot, task: asyncio.Task[Reply | asyncio.Future[Any]]) -> None:
        reply = _task_reply(task)
        if isinstance(reply, asyncio.Future):
            if self._transport is None and not reply.done():
                self._api.abandoned(reply)  # the client left while its device was being authenticated
            self._answer(slot, reply)
        else:
            self._complete(slot, reply)

    def _complete(self, slot: _Slot, reply: Reply) -> None:
        slot.data = encode(reply, keep_alive=not slot.close)
        transport = self._transport
        while self._slots and self._slots[0].data is not None:
            ready = self._slots.popleft()
            if transport is None or self._closing:
                continue
            transport.write(ready.data)  # type: ignore[arg-type]
            if ready.close:
                self._closing = True
                transport.close()
        if transport is None or self._closing:
            return
        if self._paused and len(self._slots) <= _MAX_PIPELINED // 2:
            self._paused = False
            transport.resume_reading()

    def _check_idle(self) -> None:
        """One timer per connection, for the request deadline and the idle time, moved on
        when it fires rather than at every request."""
        self._idle = None
        if self._transport is None or self._stopped:
            return
        now = self._loop.time()
        deadlines = []
        if self._begun_at:
            deadline = self._begun_at + self._limits.request_seconds
            if now >= deadline:
                metrics.BAD_REQUESTS.labels("http", "request_timeout").inc()
                self._refuse(Reply.text(408, "The request did not arrive in time"))
                return
            deadlines.append(deadline)
        idle = self._limits.idle_seconds
        if idle > 0:
            quiet = now - self._active_at
            if quiet >= idle and not self._slots and not self._begun_at:
                self.close_when_idle()
                return
            deadlines.append(now + (idle if self._slots or quiet >= idle else idle - quiet))
        if deadlines:
            self._idle = self._loop.call_at(min(deadlines), self._check_idle)

    def close_when_idle(self) -> None:
        """Close now if nothing is being answered; otherwise after the last answer."""
        if self._transport is None:
            return
        if self._slots:
            self._slots[-1].close = True
        else:
            self._closing = True
            self._transport.close()


def _task_reply(task: asyncio.Task[Reply | asyncio.Future[Any]]) -> Reply | asyncio.Future[Any]:
    if task.cancelled():
        return Reply.text(503, "The gateway is shutting down")
    exc = task.exception()
    if exc is not None:
        log.error("device API request failed", exc_info=exc)
        return Reply.text(500, "Internal error")
    return task.result()
