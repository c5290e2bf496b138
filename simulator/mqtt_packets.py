"""MQTT 3.1.1 and 5.0 packets, as much as a load generator needs: encoded once, read minimally.

Packets the generator sends are encoded here once and written as ready bytes:
CONNECT, PUBLISH at QoS 0 or 1 (only the packet id, and optionally a
timestamp, change from one message to the next, or a gateway's few payloads
take turns), PINGREQ, DISCONNECT and
SUBSCRIBE. Packets it receives are split by their fixed header and read
minimally: CONNACK (return or reason code, and MQTT 5's Receive Maximum),
PUBACK (packet id and, on MQTT 5, reason code), SUBACK, PINGRESP and MQTT 5's
server DISCONNECT. No client library: paho or amqtt would spend tens of
microseconds of Python per message, and one generator process has to push
well over 50,000 messages a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

MAX_PACKET_ID = 65_535
PACKET_IDS = tuple(i.to_bytes(2, "big") for i in range(MAX_PACKET_ID + 1))
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
PROPERTY_RECEIVE_MAXIMUM = 0x21
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
            props = bytes((PROPERTY_RECEIVE_MAXIMUM,)) + receive_maximum.to_bytes(2, "big")
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

    ``cycle`` (from :meth:`build_cycle`): messages that take turns instead, as
    a gateway's sub-devices do; each is ``(head, part, part...)``, sent as
    ``head + packet id + parts`` joined by one timestamp. ``head`` and ``tail``
    are then unused.
    """

    qos: int
    head: bytes  # fixed header, remaining length and topic
    tail: bytes  # (MQTT 5: empty properties) payload, or its part before the timestamp
    tail_after_ts: bytes | None = None
    cycle: tuple[tuple[bytes, ...], ...] = ()

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

    @classmethod
    def build_cycle(
        cls, topic: str, payloads: Sequence[tuple[bytes, ...]], *, qos: int = 1, version: int = MQTT_311
    ) -> PublishTemplate:
        """Messages sent in turn on one connection, each payload given as its parts around
        its 13-digit timestamps (one part: no timestamp)."""
        if qos not in (0, 1):
            raise ValueError("QoS 0 or 1")
        if not payloads or not all(payloads):
            raise ValueError("a cycle needs at least one payload, each of at least one part")
        props = b"\x00" if version == MQTT_5 else b""
        topic_bytes = utf8(topic)
        entries = []
        for parts in payloads:
            length = len(topic_bytes) + (2 if qos else 0) + len(props) + sum(map(len, parts)) + 13 * (len(parts) - 1)
            head = bytes((PUBLISH | (qos << 1),)) + varint(length) + topic_bytes
            entries.append((head, props + parts[0], *parts[1:]))
        return cls(qos, b"", b"", None, tuple(entries))

    def encode(self, packet_id: int = 0, ts_ms: int = 0, turn: int = 0) -> bytes:
        """One message (the slow way; the connection inlines this); ``turn``: which of a cycle."""
        pid = PACKET_IDS[packet_id] if self.qos else b""
        if self.cycle:
            head, *parts = self.cycle[turn % len(self.cycle)]
            return head + pid + (b"%013d" % ts_ms).join(parts)
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
        length, header = remaining_length(data, i + 1, end)
        if length < 0:
            break
        stop = i + 1 + header + length
        if stop > end:
            break
        packets.append((data[i], bytes(data[i + 1 + header : stop])))
        i = stop
    return packets, i


def remaining_length(data: bytes | bytearray, at: int, end: int) -> tuple[int, int]:
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
    length, header = remaining_length(body, at, len(body))
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
            value, n = remaining_length(body, i, stop)
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

