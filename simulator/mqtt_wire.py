"""MQTT 3.1.1 and 5.0 on the wire, as much as a load generator needs, and one device's connection.

Packets the generator sends are encoded here once and written as ready bytes:
CONNECT, PUBLISH at QoS 0 or 1 (only the packet id, and optionally a
timestamp, change from one message to the next), PINGREQ, DISCONNECT and
SUBSCRIBE. Packets it receives are split by their fixed header and read
minimally: CONNACK (return or reason code, and MQTT 5's Receive Maximum),
PUBACK (packet id and, on MQTT 5, reason code), SUBACK, PINGRESP and MQTT 5's
server DISCONNECT. No client library: paho or amqtt would spend tens of
microseconds of Python per message, and one generator process has to push
well over 50,000 messages a second.

:class:`MqttConnection` is one device's connection, an ``asyncio.Protocol``
whose per-message work is a dictionary update and a slice of one
``transport.write``; the driver that owns it (simulator.mqtt_load) is told of
acknowledgements once per received chunk, not once per packet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

MQTT_311 = 4
MQTT_5 = 5
VERSIONS = {"3.1.1": MQTT_311, "5": MQTT_5}

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82  # with its mandatory flags
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # 3.1.1, and 5's "normal disconnection" with no properties

_MAX_PACKET_ID = 65_535
_PACKET_IDS = tuple(i.to_bytes(2, "big") for i in range(_MAX_PACKET_ID + 1))
_MAX_INCOMING = 1 << 20  # a larger packet from the server is a protocol error here

_CONNACK_311 = {
    1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
    4: "bad user name or password", 5: "not authorized",
}
_REASONS_5 = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8B: "server shutting down", 0x8C: "bad authentication method", 0x8D: "keep alive timeout",
    0x8E: "session taken over", 0x8F: "topic filter invalid", 0x90: "topic name invalid",
    0x91: "packet identifier in use", 0x93: "receive maximum exceeded", 0x94: "topic alias invalid",
    0x95: "packet too large", 0x96: "message rate too high", 0x97: "quota exceeded",
    0x98: "administrative action", 0x99: "payload format invalid", 0x9A: "retain not supported",
    0x9B: "QoS not supported", 0x9C: "use another server", 0x9D: "server moved",
    0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded", 0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported", 0xA2: "wildcard subscriptions not supported",
}
_PROPERTY_RECEIVE_MAXIMUM = 0x21
# MQTT 5 property identifier -> size of its value: a fixed byte count, or -1 for a
# two-byte-length string or binary, -2 for a string pair, -4 for a variable byte integer.
_PROPERTY_SIZES = {
    0x01: 1, 0x02: 4, 0x03: -1, 0x08: -1, 0x09: -1, 0x0B: -4, 0x11: 4, 0x12: -1, 0x13: 2, 0x15: -1, 0x16: -1,
    0x17: 1, 0x18: 4, 0x19: 1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2, 0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1,
    0x26: -2, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1,
}


class MqttProtocolError(Exception):
    """The server's bytes are not MQTT this client understands."""


def connack_error(version: int, code: int) -> str:
    """The error kind counted for a refused CONNECT."""
    names = _REASONS_5 if version == MQTT_5 else _CONNACK_311
    return f"CONNACK refused: 0x{code:02x} {names.get(code, 'unknown code')}"


def reason_name(code: int) -> str:
    return f"0x{code:02x} {_REASONS_5.get(code, 'unknown reason')}"


# --- encoding -------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """MQTT's Variable Byte Integer (remaining lengths, property lengths)."""
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"not encodable as a variable byte integer: {value}")
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def utf8(text: str | bytes) -> bytes:
    """A two-byte-length-prefixed UTF-8 string (or binary data)."""
    data = text.encode() if isinstance(text, str) else text
    if len(data) > 65_535:
        raise ValueError("strings are at most 65,535 bytes")
    return len(data).to_bytes(2, "big") + data


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + varint(len(body)) + body


def encode_connect(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 60,
    version: int = MQTT_311,
    clean: bool = True,
    receive_maximum: int | None = None,
) -> bytes:
    """CONNECT: 3.1.1 or 5, no will; on 5, Receive Maximum when given, nothing else."""
    if version not in (MQTT_311, MQTT_5):
        raise ValueError(f"unsupported MQTT protocol level {version}")
    if not 0 <= keepalive <= 65_535:
        raise ValueError("keep-alive must be 0..65535 seconds")
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    header = utf8("MQTT") + bytes((version, flags)) + keepalive.to_bytes(2, "big")
    if version == MQTT_5:
        props = b""
        if receive_maximum is not None:
            props = bytes((_PROPERTY_RECEIVE_MAXIMUM,)) + receive_maximum.to_bytes(2, "big")
        header += varint(len(props)) + props
    payload = utf8(client_id)
    if username is not None:
        payload += utf8(username)
    if password is not None:
        payload += utf8(password)
    return packet(CONNECT, header + payload)


def encode_subscribe(packet_id: int, topic_filter: str, qos: int = 1, version: int = MQTT_311) -> bytes:
    props = b"\x00" if version == MQTT_5 else b""
    return packet(SUBSCRIBE, packet_id.to_bytes(2, "big") + props + utf8(topic_filter) + bytes((qos,)))


def timestamped(body: bytes) -> tuple[bytes, bytes]:
    """The two halves of ``{"ts":T,"values":BODY}`` around a 13-digit millisecond T."""
    return b'{"ts":', b',"values":' + body + b"}"


@dataclass(frozen=True, slots=True)
class PublishTemplate:
    """PUBLISH of one payload on one topic, pre-encoded but for the packet id and timestamp.

    QoS 1 message = ``head + packet id + tail``; with ``timestamp``, the tail
    is split around a 13-digit millisecond timestamp (true of every time from
    2001 to 2286), so every message of a template has the same length.
    """

    qos: int
    head: bytes  # fixed header, remaining length and topic
    tail: bytes  # (MQTT 5: empty properties) payload, or its part before the timestamp
    tail_after_ts: bytes | None = None

    @classmethod
    def build(
        cls, topic: str, body: bytes, *, qos: int = 1, version: int = MQTT_311, timestamp: bool = False
    ) -> PublishTemplate:
        if qos not in (0, 1):
            raise ValueError("QoS 0 or 1")
        props = b"\x00" if version == MQTT_5 else b""
        after: bytes | None = None
        if timestamp:
            before, after = timestamped(body)
            payload_length = len(before) + 13 + len(after)
        else:
            before, payload_length = body, len(body)
        topic_bytes = utf8(topic)
        length = len(topic_bytes) + (2 if qos else 0) + len(props) + payload_length
        head = bytes((PUBLISH | (qos << 1),)) + varint(length) + topic_bytes
        return cls(qos, head, props + before, after)

    def encode(self, packet_id: int = 0, ts_ms: int = 0) -> bytes:
        """One message (the slow way; the connection inlines this)."""
        pid = _PACKET_IDS[packet_id] if self.qos else b""
        if self.tail_after_ts is None:
            return self.head + pid + self.tail
        return self.head + pid + self.tail + b"%013d" % ts_ms + self.tail_after_ts


# --- decoding -------------------------------------------------------------------------------------


def split_packets(data: bytes | bytearray, start: int = 0) -> tuple[list[tuple[int, bytes]], int]:
    """Complete packets in ``data[start:]`` as (first byte, body), and the offset after the last."""
    packets: list[tuple[int, bytes]] = []
    end = len(data)
    i = start
    while i + 2 <= end:
        length, header = _remaining_length(data, i + 1, end)
        if length < 0:
            break
        stop = i + 1 + header + length
        if stop > end:
            break
        packets.append((data[i], bytes(data[i + 1 + header : stop])))
        i = stop
    return packets, i


def _remaining_length(data: bytes | bytearray, at: int, end: int) -> tuple[int, int]:
    """(remaining length, bytes it took), or (-1, 0) if it is not complete in ``data``."""
    value = 0
    for n in range(4):
        if at + n >= end:
            return -1, 0
        byte = data[at + n]
        value |= (byte & 0x7F) << (7 * n)
        if not byte & 0x80:
            if value > _MAX_INCOMING:
                raise MqttProtocolError(f"a {value}-byte packet from the server")
            return value, n + 1
    raise MqttProtocolError("malformed remaining length")


def read_properties(body: bytes, at: int) -> tuple[dict[int, object], int]:
    """MQTT 5 properties at ``body[at:]``: ({identifier: value}, offset after them).

    Values are ints, or bytes for strings and binary data; a repeated property keeps its last value.
    """
    length, header = _remaining_length(body, at, len(body))
    if length < 0:
        raise MqttProtocolError("truncated properties")
    i, stop = at + header, at + header + length
    if stop > len(body):
        raise MqttProtocolError("truncated properties")
    props: dict[int, object] = {}
    while i < stop:
        ident = body[i]
        size = _PROPERTY_SIZES.get(ident)
        if size is None:
            raise MqttProtocolError(f"unknown property 0x{ident:02x}")
        i += 1
        value: object
        if size > 0:
            value = int.from_bytes(body[i : i + size], "big")
            i += size
        elif size == -4:
            value, n = _remaining_length(body, i, stop)
            i += n
        else:
            value, i = _string(body, i)
            if size == -2:
                value = (value, (pair := _string(body, i))[0])
                i = pair[1]
        props[ident] = value
    if i != stop:
        raise MqttProtocolError("properties overrun their length")
    return props, stop


def _string(body: bytes, i: int) -> tuple[bytes, int]:
    n = int.from_bytes(body[i : i + 2], "big")
    return body[i + 2 : i + 2 + n], i + 2 + n


# --- one device's connection ----------------------------------------------------------------------


class ConnectionOwner(Protocol):
    """Who drives a set of connections: told of acknowledgements and of a connection's end."""

    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        """PUBACKs, in one received chunk: the start times (nanoseconds) of the messages
        acknowledged as received, and the MQTT 5 reason codes >= 0x80 of those refused, if any."""
        ...

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        """The connection ended; ``lost``: start times of messages still unacknowledged."""
        ...

    def pong(self, conn: MqttConnection) -> None:
        """A PINGRESP: the server has read everything sent before the PINGREQ."""
        ...


class _Unowned:
    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        pass

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        pass

    def pong(self, conn: MqttConnection) -> None:
        pass


UNOWNED: ConnectionOwner = _Unowned()


@dataclass(frozen=True, slots=True)
class Device:
    """What a simulated device connects with."""

    client_id: str
    username: str | None = None
    password: str | None = None


class MqttConnection(asyncio.Protocol):
    """One device's MQTT connection: CONNECT, then PUBLISH as its owner says.

    ``inflight`` maps each unacknowledged QoS 1 packet id to when its message
    counts as started; ids cycle 1..65535, skipping ones still in use.
    ``window`` is how many may be unacknowledged at once (--inflight, lowered
    to the server's Receive Maximum on MQTT 5). ``connected`` resolves with the
    CONNACK's code (0: accepted), or -1 if the connection ends first (why: ``lost_reason``).
    """

    __slots__ = (
        "_buffer",
        "_connect",
        "_head",
        "_last_ts",
        "_pid",
        "_qos",
        "_tail",
        "_tail_after_ts",
        "_transport",
        "connected",
        "index",
        "inflight",
        "lost_reason",
        "open",
        "owner",
        "pings_answered",
        "sent",
        "version",
        "window",
    )

    def __init__(
        self, index: int, connect: bytes, template: PublishTemplate, *, window: int, version: int = MQTT_311,
    ) -> None:
        self.index = index
        self.owner: ConnectionOwner = UNOWNED
        self.version = version
        self.window = window
        self.inflight: dict[int, int] = {}
        self.open = False
        self.sent = 0  # PUBLISH packets written, any QoS
        self.pings_answered = 0
        self.connected: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._qos = template.qos
        self._head = template.head
        self._tail = template.tail
        self._tail_after_ts = template.tail_after_ts
        self._last_ts = 0
        self._pid = 0
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._connect = connect
        self.lost_reason = ""

    @property
    def free(self) -> int:
        """How many more QoS 1 messages may be sent now."""
        return self.window - len(self.inflight)

    # --- sending

    def publish(self, count: int, started_ns: int, *, ping: bool = False) -> None:
        """Write ``count`` messages (and a PINGREQ after them if ``ping``) in one write,
        all counted as started at ``started_ns``."""
        transport = self._transport
        if transport is None or not self.open or count <= 0:
            return
        head, tail, after = self._head, self._tail, self._tail_after_ts
        parts: list[bytes] = []
        if self._qos:
            inflight, ids, pid = self.inflight, _PACKET_IDS, self._pid
            for _ in range(count):
                pid = pid % _MAX_PACKET_ID + 1
                while pid in inflight:
                    pid = pid % _MAX_PACKET_ID + 1
                inflight[pid] = started_ns
                parts.append(head)
                parts.append(ids[pid])
                parts.append(tail)
                if after is not None:
                    parts.append(self._timestamp())
                    parts.append(after)
            self._pid = pid
        else:
            for _ in range(count):
                parts.append(head)
                parts.append(tail)
                if after is not None:
                    parts.append(self._timestamp())
                    parts.append(after)
        if ping:
            parts.append(PINGREQ_PACKET)
        self.sent += count
        transport.write(b"".join(parts))

    def publish_each(self, started: Sequence[int]) -> None:
        """Write one message per start time (QoS 1), all in one write."""
        transport = self._transport
        if transport is None or not self.open or not started:
            return
        head, tail, after = self._head, self._tail, self._tail_after_ts
        inflight, ids, pid = self.inflight, _PACKET_IDS, self._pid
        parts: list[bytes] = []
        for started_ns in started:
            pid = pid % _MAX_PACKET_ID + 1
            while pid in inflight:
                pid = pid % _MAX_PACKET_ID + 1
            inflight[pid] = started_ns
            parts.append(head)
            parts.append(ids[pid])
            parts.append(tail)
            if after is not None:
                parts.append(self._timestamp())
                parts.append(after)
        self._pid = pid
        self.sent += len(started)
        transport.write(b"".join(parts))

    def _timestamp(self) -> bytes:
        """Now in milliseconds, but always after this device's previous one: no two of its
        messages share a row in a (device, key, ts) table."""
        ts = time.time_ns() // 1_000_000
        if ts <= self._last_ts:
            ts = self._last_ts + 1
        self._last_ts = ts
        return b"%013d" % ts

    def ping(self) -> None:
        if self._transport is not None and self.open:
            self._transport.write(PINGREQ_PACKET)

    def write(self, data: bytes) -> None:
        if self._transport is not None and self.open:
            self._transport.write(data)

    def disconnect(self) -> None:
        """DISCONNECT, then close once written; what is still unacknowledged is the owner's to count."""
        if self._transport is not None:
            if self.open:
                self._transport.write(DISCONNECT_PACKET)
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a registered subclass
        self.open = True
        self._transport.write(self._connect)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        end = len(data)
        i = 0
        inflight = self.inflight
        started: list[int] = []
        failures: list[int] | None = None
        try:
            while i + 2 <= end:
                kind = data[i]
                length = data[i + 1]
                if length < 0x80:
                    body = i + 2
                else:
                    length, header = _remaining_length(data, i + 1, end)
                    if length < 0:
                        break
                    body = i + 1 + header
                stop = body + length
                if stop > end:
                    break
                if kind == PUBACK:
                    if length < 2:
                        raise MqttProtocolError("PUBACK without a packet id")
                    at = inflight.pop((data[body] << 8) | data[body + 1], None)
                    if at is None:
                        raise MqttProtocolError("PUBACK for a packet id not in flight")
                    if length > 2 and data[body + 2] >= 0x80:
                        if failures is None:
                            failures = []
                        failures.append(data[body + 2])
                    else:
                        started.append(at)
                else:
                    self._control(kind, data[body:stop])
                i = stop
        except MqttProtocolError as exc:
            self._lose(f"bad packet from the server: {exc}")
            return
        if i < end:
            self._buffer = data[i:]
        if started or failures:
            self.owner.acked(self, started, failures)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self._lose(f"connection lost: {type(exc).__name__}" if exc else "connection closed by the server")

    def _control(self, kind: int, body: bytes) -> None:
        if kind == PINGRESP:
            self.pings_answered += 1
            self.owner.pong(self)
        elif kind == CONNACK:
            self._on_connack(body)
        elif kind == DISCONNECT:  # MQTT 5 only: the server says why
            self._lose(f"DISCONNECT from the server: {reason_name(body[0] if body else 0)}")
        elif kind == SUBACK:
            pass
        else:
            raise MqttProtocolError(f"unexpected packet type {kind >> 4} (first byte 0x{kind:02x})")

    def _on_connack(self, body: bytes) -> None:
        if len(body) < 2 or self.connected.done():
            raise MqttProtocolError("malformed or second CONNACK")
        code = body[1]
        if self.version == MQTT_5 and len(body) > 2:
            props, _ = read_properties(body, 2)
            receive_maximum = props.get(_PROPERTY_RECEIVE_MAXIMUM)
            if isinstance(receive_maximum, int) and 0 < receive_maximum < self.window:
                self.window = receive_maximum
        self.connected.set_result(code)
        if code:
            self._lose(connack_error(self.version, code))

    def _lose(self, reason: str) -> None:
        """Close for good and tell the owner, once, which messages were lost."""
        if not self.open:
            return
        self.open = False
        if self._transport is not None:
            self._transport.abort()
        self.lost_reason = reason
        if not self.connected.done():
            self.connected.set_result(-1)
        lost = list(self.inflight.values())
        self.inflight.clear()
        self.owner.closed(self, reason, lost)


# --- opening many -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    """Connections that got a CONNACK accepting them, and what happened to the others."""

    connections: list[MqttConnection]
    errors: dict[str, int]
    elapsed_s: float


async def connect_all(
    host: str,
    port: int,
    devices: Sequence[Device],
    template: PublishTemplate,
    *,
    version: int = MQTT_311,
    window: int = 10,
    keepalive: int = 60,
    rate: float = 1_000.0,
    concurrency: int = 500,
    timeout: float = 30.0,
    source_hosts: Sequence[str] = (),
) -> ConnectOutcome:
    """Connect every device on a timetable: device i starts at ``i / rate`` seconds
    (no CONNECT storm), with at most ``concurrency`` handshakes pending at once.

    Unlike HTTP's all-or-nothing, a refused or failed device is counted by kind
    and the others go on. ``source_hosts`` spreads the connections over several
    local addresses (127.0.0.2, ...): one address has about 28,000 ephemeral ports.
    """
    if rate <= 0:
        raise ValueError("the connect rate must be positive")
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    accepted: list[MqttConnection] = []
    errors: dict[str, int] = {}

    def count(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def one(index: int, device: Device) -> None:
        conn: MqttConnection | None = None
        try:
            connect = encode_connect(
                device.client_id, username=device.username, password=device.password, keepalive=keepalive,
                version=version,
            )
            local = (source_hosts[index % len(source_hosts)], 0) if source_hosts else None
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: MqttConnection(index, connect, template, window=window, version=version),
                    host, port, local_addr=local,
                )
                code = await conn.connected
            if code < 0:
                count(conn.lost_reason or "connection closed before CONNACK")
            elif code:
                count(connack_error(version, code))
            else:
                accepted.append(conn)
                conn = None
        except TimeoutError:
            count("no CONNACK before the deadline")
        except OSError as exc:
            count(f"connect failed: {exc.strerror or type(exc).__name__}")
        finally:
            if conn is not None:
                conn.abort()
            gate.release()

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for index, device in enumerate(devices):
                delay = started + index / rate - time.perf_counter()
                if delay > 0:  # the ramp's timetable
                    await asyncio.sleep(delay)
                await gate.acquire()
                group.create_task(one(index, device))
    except BaseException:
        disconnect_all(accepted)
        raise
    accepted.sort(key=lambda c: c.index)
    return ConnectOutcome(accepted, errors, time.perf_counter() - started)


def disconnect_all(connections: Sequence[MqttConnection]) -> None:
    for conn in connections:
        conn.owner = UNOWNED
        conn.disconnect()

