"""Devices downloading an OTA package over MQTT as ThingsBoard's SDK does: each asks for chunk n
on ``v2/fw/request/1/chunk/n`` (the chunk size in ASCII) once chunk n-1 has come on
``v2/fw/response/1/chunk/n-1``, with no subscription, until it has the whole package.

Each device keeps only a running SHA-256 of what it got, so the generator's memory does not grow
with the package either. The responder at the end is the baseline: a bare asyncio MQTT server
that serves the same package from memory, with no database, no authentication and no limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from fleetgate.simulator.mqtt_packets import CONNACK, PUBLISH, encode_connect, packet, split_packets, utf8

_REQUEST = "v2/fw/request/1/chunk/{}"
_RESPONSE = b"v2/fw/response/1/chunk/"
_ERROR = b"v2/fw/error"
_PINGREQ, _PINGRESP, _CONNECT = 0xC0, 0xD0, 0x10


@dataclass(slots=True)
class DownloadResult:
    devices: int
    completed: int = 0
    verified: int = 0
    chunks: int = 0
    bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def chunks_per_s(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


class _Device(asyncio.Protocol):
    def __init__(self, token: str, chunk_bytes: int, size: int, expected: str, result: DownloadResult) -> None:
        self._token, self._chunk_bytes, self._size, self._expected = token, chunk_bytes, size, expected
        self._result = result
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._hash = hashlib.sha256()
        self._got = 0
        self._next = 0
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._transport.write(encode_connect(f"ota-{self._token[:12]}", username=self._token, keepalive=120))

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.connected, self.done):
            if not future.done():
                future.set_exception(ConnectionError("the connection closed"))

    def start(self) -> None:
        self._ask()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _ask(self) -> None:
        assert self._transport is not None
        body = utf8(_REQUEST.format(self._next)) + str(self._chunk_bytes).encode()
        self._transport.write(packet(PUBLISH, body))  # QoS 0: the answer is the acknowledgement

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        packets, used = split_packets(self._buffer)
        del self._buffer[:used]
        for first, body in packets:
            kind = first & 0xF0
            if kind == CONNACK and not self.connected.done():
                if len(body) >= 2 and body[1] == 0:
                    self.connected.set_result(None)
                else:
                    self.connected.set_exception(ConnectionError(f"CONNACK {body[1:2].hex()}"))
            elif kind == PUBLISH:
                self._on_publish(first, body)

    def _on_publish(self, first: int, body: bytes) -> None:
        length = int.from_bytes(body[:2], "big")
        topic, start = body[2:2 + length], 2 + length
        if first & 0x06:
            start += 2  # a packet id (the gateway sends chunks at QoS 0 when nothing is subscribed)
        payload = body[start:]
        if topic.startswith(_ERROR):
            reason = payload.split(b":", 1)[0].decode(errors="replace")
            self._result.errors[reason] = self._result.errors.get(reason, 0) + 1
            self._finish()
            return
        if not topic.startswith(_RESPONSE):
            return
        self._hash.update(payload)
        self._got += len(payload)
        self._result.chunks += 1
        self._result.bytes += len(payload)
        self._next += 1
        if self._got >= self._size or not payload:
            self._result.completed += 1
            if self._hash.hexdigest() == self._expected and self._got == self._size:
                self._result.verified += 1
            self._finish()
        else:
            self._ask()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def download(
    host: str, port: int, tokens: tuple[str, ...], package: bytes, chunk_bytes: int, time_cap: float,
    connect_batch: int = 100,
) -> DownloadResult:
    """Connect every device, then start them all at once; the clock runs from the start until the
    last device has its package (or ``time_cap`` seconds)."""
    loop = asyncio.get_running_loop()
    result = DownloadResult(len(tokens))
    expected = hashlib.sha256(package).hexdigest()
    devices: list[_Device] = []
    try:
        for first in range(0, len(tokens), connect_batch):
            batch = [_Device(t, chunk_bytes, len(package), expected, result) for t in tokens[first:first + connect_batch]]
            await asyncio.gather(*(loop.create_connection(lambda d=d: d, host, port) for d in batch))
            devices += batch
            await asyncio.gather(*(d.connected for d in batch))
        started = time.perf_counter()
        for device in devices:
            device.start()
        try:
            async with asyncio.timeout(time_cap):
                await asyncio.gather(*(d.done for d in devices), return_exceptions=True)
        except TimeoutError:
            result.errors["time cap"] = sum(not d.done.done() for d in devices)
        result.seconds = time.perf_counter() - started
        lost = sum(1 for d in devices if d.done.done() and d.done.exception() is not None)
        if lost:
            result.errors["connection lost"] = lost
    finally:
        for device in devices:
            device.close()
    return result


class _Responder(asyncio.Protocol):
    """The baseline: CONNACK to any CONNECT, each request answered with its chunk from memory."""

    def __init__(self, package: bytes) -> None:
        self._package = package
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        packets, used = split_packets(self._buffer)
        del self._buffer[:used]
        for first, body in packets:
            kind = first & 0xF0
            if kind == _CONNECT:
                self._transport.write(b"\x20\x02\x00\x00")
            elif kind == _PINGREQ:
                self._transport.write(bytes((_PINGRESP, 0)))
            elif kind == PUBLISH:
                length = int.from_bytes(body[:2], "big")
                topic = body[2:2 + length].decode()
                size = int(body[2 + length:] or b"0") or len(self._package)
                number = int(topic.rsplit("/", 1)[1])
                chunk = self._package[number * size:(number + 1) * size]
                reply = topic.replace("/request/", "/response/")
                self._transport.write(packet(PUBLISH, utf8(reply) + chunk))


async def responder(package: bytes) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Responder(package), "127.0.0.1", 0, backlog=4096)
