"""The CoAP load generator's transport: devices' confirmable requests over shared UDP sockets.

Devices share UDP sockets (``devices_per_socket`` each, an asyncio
DatagramProtocol per socket, connected to the server). Each socket numbers its
own message ids (skipping those still unacknowledged) and tokens (a 32-bit
counter). A request is answered either by a piggybacked response in its ACK or
by an empty ACK followed by a separate response, which is acknowledged (every
time it comes: the server may have lost the ACK). Requests not acknowledged are
retransmitted as RFC 7252 says (ACK_TIMEOUT 2 s times a random factor up to 1.5,
doubled each time, at most 4 times), then counted as failed. The loops that
decide what to send are in simulator.coap_load.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

from fleetgate.simulator.coap_packets import (
    ACK,
    CON,
    CREATED,
    EMPTY,
    NON,
    RST,
    CoapTelemetrySpec,
    code_name,
    con_post,
    empty_ack,
    parse_header,
    telemetry_tail,
)

ACK_TIMEOUT = 2.0
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4
GAVE_UP = f"no ACK after {MAX_RETRANSMIT} retransmissions"
_SOCKET_BUFFER = 1 << 21
_TOKEN = struct.Struct("!I")


class _Exchange:
    """One request until its response: where it went, when it started, its retransmission state."""

    __slots__ = ("acked", "data", "device", "mid", "started", "timeout", "timer", "token", "tries")

    def __init__(self, device: int, mid: int, token: bytes, data: bytes, started: int) -> None:
        self.device = device
        self.mid = mid
        self.token = token
        self.data = data
        self.started = started
        self.acked = False
        self.tries = 0
        self.timeout = ACK_TIMEOUT * random.uniform(1.0, ACK_RANDOM_FACTOR)
        self.timer: asyncio.TimerHandle | None = None


class _Socket(asyncio.DatagramProtocol):
    """One UDP socket: its message ids and tokens, the exchanges open on it."""

    def __init__(self, driver: CoapDriver) -> None:
        self.driver = driver
        self.transport: asyncio.DatagramTransport | None = None
        self.next_mid = random.randrange(65536)
        self.next_token = random.randrange(1 << 32)
        self.by_mid: dict[int, _Exchange] = {}  # not acknowledged yet
        self.by_token: dict[bytes, _Exchange] = {}  # not answered yet

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.driver.received(self, data)

    def error_received(self, exc: Exception) -> None:
        self.driver.errors[f"socket error: {getattr(exc, 'strerror', None) or exc}"] += 1

    def mid(self) -> int:
        mid = self.next_mid
        while mid in self.by_mid:  # at most the exchanges open on this socket
            mid = (mid + 1) & 0xFFFF
        self.next_mid = (mid + 1) & 0xFFFF
        return mid

    def token(self) -> bytes:
        self.next_token = (self.next_token + 1) & 0xFFFFFFFF
        return _TOKEN.pack(self.next_token)


class CoapDriver:
    """The sockets of one generator process and the exchanges on them; the loops below drive it."""

    def __init__(self, spec: CoapTelemetrySpec) -> None:
        self._tails = [telemetry_tail(token, spec.body) for token in spec.tokens]
        self._per_socket = spec.devices_per_socket
        self._sockets_needed = spec.sockets
        self.sockets: list[_Socket] = []
        self.errors: Counter[str] = Counter()
        self.retransmissions = 0
        self.on_answer: Callable[[int, int, bool], None] = lambda device, started, ok: None
        self._loop = asyncio.get_running_loop()

    @property
    def devices(self) -> int:
        return len(self._tails)

    async def open(self, host: str, port: int) -> None:
        """Open the sockets, each connected to ``host``:``port``."""
        loop = self._loop
        for _ in range(self._sockets_needed):
            _, protocol = await loop.create_datagram_endpoint(lambda: _Socket(self), remote_addr=(host, port))
            self.sockets.append(protocol)

    def close(self) -> None:
        self.abandon()
        for sock in self.sockets:
            if sock.transport is not None:
                sock.transport.close()

    def open_exchanges(self) -> int:
        return sum(len(sock.by_token) for sock in self.sockets)

    def send(self, device: int, started: int) -> None:
        sock = self.sockets[device // self._per_socket]
        mid, token = sock.mid(), sock.token()
        exchange = _Exchange(device, mid, token, con_post(mid, token, self._tails[device]), started)
        sock.by_mid[mid] = exchange
        sock.by_token[token] = exchange
        exchange.timer = self._loop.call_later(exchange.timeout, self._retransmit, sock, exchange)
        assert sock.transport is not None
        sock.transport.sendto(exchange.data)

    def _retransmit(self, sock: _Socket, exchange: _Exchange) -> None:
        if exchange.tries >= MAX_RETRANSMIT:
            self._end(sock, exchange)
            self.errors[GAVE_UP] += 1
            self.on_answer(exchange.device, exchange.started, False)
            return
        exchange.tries += 1
        exchange.timeout *= 2
        self.retransmissions += 1
        exchange.timer = self._loop.call_later(exchange.timeout, self._retransmit, sock, exchange)
        assert sock.transport is not None
        sock.transport.sendto(exchange.data)

    def received(self, sock: _Socket, data: bytes) -> None:
        header = parse_header(data)
        if header is None:
            self.errors["not a CoAP datagram"] += 1
            return
        if header.mtype == ACK or header.mtype == RST:
            exchange = sock.by_mid.get(header.mid)
            if exchange is None:
                return  # the answer to a retransmission already answered
            if header.mtype == RST:
                self._answered(sock, exchange, "RST")
            elif header.code == EMPTY:  # the response follows separately
                exchange.acked = True
                del sock.by_mid[header.mid]
                if exchange.timer is not None:
                    exchange.timer.cancel()
                    exchange.timer = None
            else:
                self._answered(sock, exchange, None if header.code == CREATED else f"CoAP {code_name(header.code)}")
            return
        if header.mtype == CON:
            assert sock.transport is not None
            sock.transport.sendto(empty_ack(header.mid))  # every time: the server may have lost our ACK
        if header.mtype in (CON, NON) and header.code >> 5 >= 2:
            exchange = sock.by_token.get(header.token)
            if exchange is not None:
                self._answered(sock, exchange, None if header.code == CREATED else f"CoAP {code_name(header.code)}")

    def _answered(self, sock: _Socket, exchange: _Exchange, error: str | None) -> None:
        self._end(sock, exchange)
        if error is not None:
            self.errors[error] += 1
        self.on_answer(exchange.device, exchange.started, error is None)

    def _end(self, sock: _Socket, exchange: _Exchange) -> None:
        if exchange.timer is not None:
            exchange.timer.cancel()
        if not exchange.acked:
            sock.by_mid.pop(exchange.mid, None)
        sock.by_token.pop(exchange.token, None)

    def abandon(self) -> int:
        """Forget every open exchange (the run is over); how many there were."""
        count = 0
        for sock in self.sockets:
            for exchange in sock.by_token.values():
                if exchange.timer is not None:
                    exchange.timer.cancel()
                count += 1
            sock.by_mid.clear()
            sock.by_token.clear()
        return count
