"""CoAP load: devices posting confirmable telemetry over shared UDP sockets, one load spec run.

Devices share UDP sockets (``devices_per_socket`` each, an asyncio
DatagramProtocol per socket, connected to the server). Each socket numbers its
own message ids (skipping those still unacknowledged) and tokens (a 32-bit
counter). A request is answered either by a piggybacked response in its ACK or
by an empty ACK followed by a separate response, which is acknowledged; either
way its latency runs from send (closed loop) or due time (open loop) to the
response. Requests not acknowledged are retransmitted as RFC 7252 says (ACK_TIMEOUT
2 s times a random factor up to 1.5, doubled each time, at most 4 times), then
counted as failed. Requests still unanswered at the deadline are errors too.

Closed loop: every device keeps ``inflight`` requests unanswered, sending the
next when one is answered. Open loop: request k is due at ``start + k / rate``
on device ``k mod n``, queued on the device while it has ``inflight``
unanswered (latency still from the due time). Both bounded in count and time;
no task per device: everything runs in the sockets' callbacks and timers.
Before any clock starts every device sends one request and gets its answer.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from simulator.coap_packets import (
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
from simulator.loadspec import LoadSpec
from simulator.stats import Histogram, LatencyRecorder, LoadResult, MeasurementWindow
from simulator.timetable import OpenLoopClock

ACK_TIMEOUT = 2.0
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4
GAVE_UP = f"no ACK after {MAX_RETRANSMIT} retransmissions"
TIMEOUT = "no response before the deadline"
_SOCKET_BUFFER = 1 << 21
_SETUP_TIMEOUT = 60.0
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


class _Loop:
    """What the closed and open loops share: counting answers, ending the run."""

    KIND = ""

    def __init__(self, driver: CoapDriver, datapoints: int, max_requests: int, inflight: int) -> None:
        self._driver = driver
        self._datapoints = datapoints
        self._left = max_requests
        self._inflight = inflight
        self._busy = [0] * driver.devices  # unanswered requests of each device
        self._recorder = LatencyRecorder()
        self._ok = 0
        self._total_ok = 0
        self._outstanding = 0
        self._sending = False
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        driver.on_answer = self._answer
        driver.errors = Counter()  # this loop's

    def _send(self, device: int, started: int) -> None:
        self._busy[device] += 1
        self._outstanding += 1
        self._driver.send(device, started)

    def _answer(self, device: int, started: int, ok: bool) -> None:
        raise NotImplementedError

    def _check_done(self) -> None:
        if not self._outstanding and not self._sending and not self._done.done():
            self._done.set_result(None)

    async def _wait(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._done
        except TimeoutError:
            pass
        left = self._driver.abandon()
        if left:
            self._driver.errors[TIMEOUT] += left

    def _result(self, window_s: float, cpu_s: float, rate: float | None = None) -> LoadResult:
        return LoadResult(
            kind=self.KIND, connections=len(self._driver.sockets), window_s=window_s, ok=self._ok,
            datapoints_per_request=self._datapoints, histogram=self._recorder.freeze(),
            errors=dict(self._driver.errors), total_ok=self._total_ok, cpu_s=cpu_s, target_rate=rate,
        )


class ClosedLoop(_Loop):
    KIND = "closed-loop"

    def __init__(self, driver: CoapDriver, datapoints: int, max_requests: int, inflight: int) -> None:
        super().__init__(driver, datapoints, max_requests, inflight)
        self._window = MeasurementWindow()

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        self._sending = True
        timers = self._window.schedule(warmup, duration, self._close_window)
        try:
            now = time.perf_counter_ns()
            for _ in range(self._inflight):
                for device in range(self._driver.devices):
                    if self._left <= 0:
                        break
                    self._left -= 1
                    self._send(device, now)
            if self._left <= 0:
                self._sending = False
            self._check_done()
            await self._wait(warmup + duration + drain_timeout)
        finally:
            self._sending = False
            for timer in timers:
                timer.cancel()
            self._window.close()
        return self._result(self._window.seconds, self._window.cpu_s)

    def _close_window(self) -> None:
        self._window.close()
        self._sending = False
        self._check_done()

    def _answer(self, device: int, started: int, ok: bool) -> None:
        now = time.perf_counter_ns()
        self._busy[device] -= 1
        self._outstanding -= 1
        if ok:
            self._total_ok += 1
            if self._window.measuring:
                self._ok += 1
                self._recorder.record_ns(now - started)
        if self._sending and self._left > 0:
            self._left -= 1
            self._send(device, now)
        elif self._left <= 0:
            self._sending = False
        self._check_done()


class OpenLoop(_Loop):
    KIND = "open-loop"

    def __init__(self, driver: CoapDriver, datapoints: int, max_requests: int, inflight: int, rate: float) -> None:
        super().__init__(driver, datapoints, max_requests, inflight)
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._queues: list[deque[int]] = [deque() for _ in range(driver.devices)]
        self._window_ns = (0, 0)

    async def run(self, warmup: float, duration: float, drain_timeout: float) -> LoadResult:
        clock = OpenLoopClock(self._rate, warmup, duration, self._left)
        self._window_ns = clock.window_ns
        n = self._driver.devices
        self._sending = True
        try:
            async with asyncio.timeout(warmup + duration + drain_timeout):
                await clock.run(lambda k, due: self._due(k % n, due))
        except TimeoutError:
            pass
        finally:
            self._sending = False
            clock.stop()
        self._check_done()
        await self._wait(drain_timeout)
        return self._result(clock.window_s, clock.cpu_s, self._rate)

    def _due(self, device: int, due: int) -> None:
        if self._busy[device] >= self._inflight:
            self._outstanding += 1
            self._queues[device].append(due)
        else:
            self._send(device, due)

    def _answer(self, device: int, started: int, ok: bool) -> None:
        now = time.perf_counter_ns()
        self._busy[device] -= 1
        self._outstanding -= 1
        if ok:
            self._total_ok += 1
            if self._window_ns[0] <= started < self._window_ns[1]:
                self._ok += 1
                self._recorder.record_ns(now - started)
        queue = self._queues[device]
        if queue:
            self._outstanding -= 1  # counted again by _send
            self._send(device, queue.popleft())
        self._check_done()

    async def _wait(self, timeout: float) -> None:
        await super()._wait(timeout)
        queued = sum(len(queue) for queue in self._queues)
        if queued:
            self._driver.errors[TIMEOUT] += queued


async def run_spec(spec: LoadSpec, ready: Callable[[], Awaitable[None]] | None = None) -> LoadResult:
    """Open the sockets, prime every device, wait for ``ready`` (the start signal), run, close."""
    workload = spec.workload
    if not isinstance(workload, CoapTelemetrySpec):
        raise TypeError(f"not a CoAP workload: {type(workload).__name__}")
    datapoints = workload.datapoints
    if not workload.tokens:
        return LoadResult("none", 0, 0.0, 0, datapoints, Histogram())
    driver = CoapDriver(workload)
    try:
        async with asyncio.timeout(_SETUP_TIMEOUT):
            await driver.open(spec.host, spec.port)
        primed = await ClosedLoop(driver, datapoints, len(workload.tokens), 1).run(0, _SETUP_TIMEOUT, 0)
        primed_retransmissions = driver.retransmissions
        if ready is not None:
            await ready()
        if spec.mode == "open":
            if not spec.rate:
                raise ValueError("an open loop needs a rate")
            loop: ClosedLoop | OpenLoop = OpenLoop(driver, datapoints, spec.max_requests, workload.inflight, spec.rate)
        else:
            loop = ClosedLoop(driver, datapoints, spec.max_requests, workload.inflight)
        result = await loop.run(spec.warmup, spec.duration, spec.drain_timeout)
        retransmitted = driver.retransmissions - primed_retransmissions
        if retransmitted:
            print(f"coap load: {retransmitted} retransmissions", file=sys.stderr, flush=True)
    finally:
        driver.close()
    return result.with_priming(primed)
