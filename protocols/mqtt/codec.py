"""MQTT 3.1.1 and 5.0 control packets to and from bytes, strictly.

:class:`Decoder` turns one connection's byte stream into packets and raises
:class:`ProtocolError` (nothing else, whatever the bytes) at the first
violation it can see in a packet alone, with the MQTT 5 reason code for it.
What needs the session's state (the first packet must be a CONNECT, a second
CONNECT, Topic Alias Maximum, Receive Maximum, which side may send what) or
is answered per item instead of by closing (a Topic Filter's syntax: SUBACK
0x8F) is the session's to check; :attr:`Decoder.protocol_level` stays None
until a CONNECT is decoded so it can.

:func:`encode` writes any packet in either version, dropping what 3.1.1
cannot carry (properties, most reason codes). Spec references are to MQTT 5
(OASIS, 2019) unless they say 3.1.1; the normative statement ids
(MQTT-x.y.z-n) are the same in both where they exist in both.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from protocols.mqtt.datatypes import (
    MAX_UINT16,
    MAX_VARINT,
    ProtocolError,
    Reader,
    has_wildcard,
    malformed,
    protocol_error,
    put_binary,
    put_string,
    put_uint16,
    read_varint,
    varint,
)
from protocols.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    Property,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Reason,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from protocols.mqtt.properties import WILL, encode_properties, read_properties

__all__ = [
    "MAX_PACKET_SIZE", "PINGRESP", "Decoder", "ProtocolError", "decode", "encode", "encode_puback",
    "encode_pubcomp", "encode_pubrec", "encode_pubrel",
]

MAX_PACKET_SIZE = 1 + 4 + MAX_VARINT
"""The largest packet MQTT can frame: a fixed header byte, a four-byte Remaining Length and its value."""

PINGRESP = b"\xd0\x00"  # the whole PINGRESP (3.13), the same in both versions

# Fixed header (2.1): the packet type in the high nibble, flags in the low one.
_TYPE_SHIFT = 4
_FLAGS = 0x0F
_PUBLISH = int(PacketType.PUBLISH)
_DUP = 0x08
_QOS = 0x06
_QOS_SHIFT = 1
_RETAIN = 0x01
_INVALID_QOS = 3
# MQTT-2.1.3-1: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, every other type but PUBLISH 0.
_REQUIRED_FLAGS = {PacketType.PUBREL: 0b0010, PacketType.SUBSCRIBE: 0b0010, PacketType.UNSUBSCRIBE: 0b0010}
_FIXED_FLAGS = tuple(_REQUIRED_FLAGS.get(PacketType(t), 0) if t else 0 for t in range(16))

# Connect Flags (3.1.2.3).
_USERNAME = 0x80
_PASSWORD = 0x40
_WILL_RETAIN = 0x20
_WILL_QOS = 0x18
_WILL_QOS_SHIFT = 3
_WILL_FLAG = 0x04
_CLEAN_START = 0x02
_CONNECT_RESERVED = 0x01

_SESSION_PRESENT = 0x01  # Connect Acknowledge Flags (3.2.2.1); bits 7-1 are reserved

# Subscription Options (3.8.3.1).
_MAX_QOS = 0x03
_NO_LOCAL = 0x04
_RETAIN_AS_PUBLISHED = 0x08
_RETAIN_HANDLING = 0x30
_RETAIN_HANDLING_SHIFT = 4
_OPTIONS_RESERVED_5 = 0xC0
_OPTIONS_RESERVED_311 = 0xFC  # 3.1.1 3.8.3.1: only the requested QoS
_SHARED_PREFIX = "$share/"

_SUBACK_FAILURE_311 = 0x80

_UINT16 = struct.Struct(">H")
_ACK = struct.Struct(">BBH")
_ACK_WITH_REASON = struct.Struct(">BBHB")


def _reasons(*codes: int) -> dict[int, Reason]:
    return {code: Reason(code) for code in codes}


# The reason codes each packet may carry (2.4, Table 2-6), keyed by code for a validating lookup.
_CONNACK_REASONS = _reasons(
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
)
_PUBACK_REASONS = _reasons(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)  # also PUBREC
_PUBREL_REASONS = _reasons(0x00, 0x92)  # also PUBCOMP
_SUBACK_REASONS = _reasons(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
_SUBACK_REASONS_311 = _reasons(0x00, 0x01, 0x02, _SUBACK_FAILURE_311)
_UNSUBACK_REASONS = _reasons(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
_DISCONNECT_REASONS = _reasons(
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
)
_AUTH_REASONS = _reasons(0x00, 0x18, 0x19)

# 3.1.1 CONNACK return codes (3.1.1 3.2.2.3) and the MQTT 5 reasons they stand for.
_CONNACK_FROM_311 = {
    0: Reason.SUCCESS,
    1: Reason.UNSUPPORTED_PROTOCOL_VERSION,
    2: Reason.CLIENT_IDENTIFIER_NOT_VALID,
    3: Reason.SERVER_UNAVAILABLE,
    4: Reason.BAD_USER_NAME_OR_PASSWORD,
    5: Reason.NOT_AUTHORIZED,
}
_SERVER_UNAVAILABLE_311 = 3
_NOT_AUTHORIZED_311 = 5
# A 3.1.1 client can only be told "server unavailable" (try again later) or "not authorized" (don't),
# and, as ThingsBoard's transport answers 3.1.x clients (ReturnCodeResolver), bad credentials are
# "not authorized" too: return code 4 is decoded but never sent.
_CONNACK_TO_311 = {reason: code for code, reason in _CONNACK_FROM_311.items()} | {
    Reason.BAD_USER_NAME_OR_PASSWORD: _NOT_AUTHORIZED_311,
} | dict.fromkeys(
    (
        Reason.SERVER_BUSY, Reason.UNSPECIFIED_ERROR, Reason.IMPLEMENTATION_SPECIFIC_ERROR,
        Reason.SERVER_SHUTTING_DOWN, Reason.USE_ANOTHER_SERVER, Reason.SERVER_MOVED,
        Reason.CONNECTION_RATE_EXCEEDED, Reason.QUOTA_EXCEEDED,
    ),
    _SERVER_UNAVAILABLE_311,
)


class Decoder:
    """Packets from one connection's byte stream, fed as it arrives.

    Partial packets are buffered across :meth:`feed` calls; a packet declaring
    more than ``max_packet_size`` bytes in all is refused as soon as its fixed
    header is read. ``protocol_level`` is None until a CONNECT is decoded, then
    its level, which decides how later packets decode (before it, as 3.1.1); a
    client passes the level it connected with. After a :class:`ProtocolError`
    the stream has no framing left, and every later ``feed`` raises it again.
    """

    __slots__ = ("max_packet_size", "protocol_level", "_buffer", "_needed", "_error")

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE, protocol_level: int | None = None) -> None:
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        self._buffer = bytearray()
        self._needed = 0  # bytes the first buffered packet takes in all, once its header is known
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a packet not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """The packets ``data`` completes, in order; a violation anywhere raises ProtocolError instead."""
        if self._error is not None:
            raise ProtocolError(self._error.reason_code, self._error.message)
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._needed:
                return []  # still inside the same packet: no copy, no parse
            data = bytes(self._buffer)
            self._buffer.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        try:
            return self._decode_all(data)
        except ProtocolError as error:
            self._error = error
            self._buffer.clear()
            raise

    def _decode_all(self, data: bytes) -> list[Packet]:
        packets: list[Packet] = []
        append = packets.append
        size = len(data)
        limit = self.max_packet_size
        level = self.protocol_level
        pos = 0
        self._needed = 0
        while size - pos >= 2:
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length & 0x80:  # a Remaining Length of more than one byte (2.1.4)
                length, start = read_varint(data, pos + 1, size)
                if length < 0:
                    break
            end = start + length
            if end - pos > limit:
                raise ProtocolError(
                    Reason.PACKET_TOO_LARGE, f"a packet of {end - pos} bytes, over the maximum of {limit}",
                )
            if end > size:
                self._needed = end - pos
                break
            if first >> _TYPE_SHIFT == _PUBLISH:
                append(_decode_publish(data, first, start, end, level))
            else:
                packet = _decode_other(Reader(data, start, end), first, level)
                if level is None and type(packet) is Connect:
                    level = self.protocol_level = packet.protocol_level
                append(packet)
            pos = end
        if pos < size:
            self._buffer += memoryview(data)[pos:]
        return packets


def decode(data: bytes, protocol_level: int | None = None) -> list[Packet]:
    """Every packet in ``data``, which must end where a packet does (for tests and whole frames)."""
    decoder = Decoder(protocol_level=protocol_level)
    packets = decoder.feed(data)
    if decoder.buffered:
        raise malformed(f"the data ends {decoder.buffered} bytes into a packet")
    return packets


# Decoding PUBLISH, the hot path: straight from the connection's bytes, no Reader.

_new = object.__new__
# A frozen dataclass's __init__ sets each field through object.__setattr__, which costs as much as
# the rest of the decode; _decode_publish sets the slots through their descriptors in half the time.
_PUBLISH_FIELDS = ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties")
_set_topic, _set_payload, _set_qos, _set_retain, _set_dup, _set_packet_id, _set_properties = (
    vars(Publish)[name].__set__ for name in _PUBLISH_FIELDS
)
if tuple(Publish.__dataclass_fields__) != _PUBLISH_FIELDS:
    raise RuntimeError("Publish's fields changed: update codec._PUBLISH_FIELDS and _decode_publish")


def _decode_publish(data: bytes, first: int, start: int, end: int, level: int | None) -> Publish:
    qos = (first & _QOS) >> _QOS_SHIFT
    if qos == _INVALID_QOS:
        raise malformed("PUBLISH with QoS 3 (MQTT-3.3.1-4)")
    pos = start + 2
    if pos > end:
        raise malformed("PUBLISH too short for its Topic Name")
    topic_end = pos + ((data[start] << 8) | data[start + 1])
    if topic_end > end:
        raise malformed("the Topic Name runs past the end of the PUBLISH")
    try:
        topic = data[pos:topic_end].decode()
    except UnicodeDecodeError:
        raise malformed("ill-formed UTF-8 or a UTF-16 surrogate in the Topic Name (MQTT-1.5.4-1)") from None
    pos = topic_end
    packet_id: int | None = None
    if qos:
        pos += 2
        if pos > end:
            raise malformed("PUBLISH too short for its Packet Identifier")
        packet_id = (data[pos - 2] << 8) | data[pos - 1]
        if not packet_id:
            raise protocol_error("PUBLISH with Packet Identifier 0 (MQTT-2.2.1-3)")
    elif first & _DUP:
        raise protocol_error("QoS 0 PUBLISH with DUP set (MQTT-3.3.1-2)")
    properties: Properties = {}
    if level == MQTT_5:
        if pos < end and not data[pos]:
            pos += 1  # no properties, the common case
        else:
            reader = Reader(data, pos, end)
            properties = read_properties(reader, PacketType.PUBLISH)
            pos = reader.pos
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        _check_publish_topic(topic, properties)
    # Publish(topic, payload, qos, retain, dup, packet_id, properties), at half the cost (see _new).
    packet: Publish = _new(Publish)
    _set_topic(packet, topic)
    _set_payload(packet, data[pos:end])
    _set_qos(packet, qos)
    _set_retain(packet, first & _RETAIN == _RETAIN)
    _set_dup(packet, first & _DUP == _DUP)
    _set_packet_id(packet, packet_id)
    _set_properties(packet, properties)
    return packet


def _check_publish_topic(topic: str, properties: Properties) -> None:
    """The few topics the fast path's one test stops: empty, with a wildcard or with U+0000."""
    if "\x00" in topic:
        raise malformed("U+0000 in the Topic Name (MQTT-1.5.4-2)")
    if has_wildcard(topic):
        raise ProtocolError(Reason.TOPIC_NAME_INVALID, f"wildcard in the PUBLISH Topic Name {topic!r} (MQTT-3.3.2-2)")
    if not topic and Property.TOPIC_ALIAS not in properties:  # only an MQTT 5 PUBLISH can carry one
        raise protocol_error("PUBLISH with an empty Topic Name and no Topic Alias (3.3.2.3.4, MQTT-4.7.3-1)")


# Decoding every other packet, through a Reader bounded to the packet.

def _decode_other(reader: Reader, first: int, level: int | None) -> Packet:
    packet_type = first >> _TYPE_SHIFT
    decoder = _DECODERS[packet_type]
    if decoder is None or (packet_type == PacketType.AUTH and level != MQTT_5):
        raise malformed(f"reserved packet type {packet_type} (2.1.2)")
    if first & _FLAGS != _FIXED_FLAGS[packet_type]:
        raise malformed(f"fixed header flags 0x{first & _FLAGS:X} for {PacketType(packet_type).name} (MQTT-2.1.3-1)")
    return decoder(reader, MQTT_5 if level == MQTT_5 else MQTT_311)


def _packet_id(reader: Reader) -> int:
    packet_id = reader.uint16()
    if not packet_id:
        raise protocol_error("Packet Identifier 0 (MQTT-2.2.1-3)")
    return packet_id


def _reason(reader: Reader, allowed: dict[int, Reason], packet: str) -> Reason:
    code = reader.byte()
    reason = allowed.get(code)
    if reason is None:
        raise malformed(f"reason code 0x{code:02X} is not one a {packet} can carry (2.4)")
    return reason


def _decode_connect(reader: Reader, _level: int) -> Connect:
    name = reader.string()
    version = reader.byte()
    # MQTT-3.1.2-1, MQTT-3.1.2-2: another protocol, MQTT 3.1 ("MQIsdp", level 3) included, is refused.
    if name != "MQTT" or version not in (MQTT_311, MQTT_5):
        raise ProtocolError(Reason.UNSUPPORTED_PROTOCOL_VERSION, f"protocol {name!r} level {version}")
    flags = reader.byte()
    _check_connect_flags(flags, version)
    keep_alive = reader.uint16()
    properties = read_properties(reader, PacketType.CONNECT) if version == MQTT_5 else {}
    client_id = reader.string()
    will = _read_will(reader, flags, version) if flags & _WILL_FLAG else None
    username = reader.string() if flags & _USERNAME else None
    password = reader.binary() if flags & _PASSWORD else None
    reader.expect_end("CONNECT")
    return Connect(
        version, client_id, bool(flags & _CLEAN_START), keep_alive, username, password, will, properties,
    )


def _check_connect_flags(flags: int, version: int) -> None:
    if flags & _CONNECT_RESERVED:
        raise malformed("CONNECT with the reserved flag set (MQTT-3.1.2-3)")
    will_qos = (flags & _WILL_QOS) >> _WILL_QOS_SHIFT
    if flags & _WILL_FLAG:
        if will_qos == _INVALID_QOS:
            raise malformed("CONNECT with Will QoS 3 (MQTT-3.1.2-12)")
    elif will_qos or flags & _WILL_RETAIN:
        raise malformed("CONNECT with Will QoS or Will Retain but no Will Flag (MQTT-3.1.2-11, MQTT-3.1.2-13)")
    if version == MQTT_311 and flags & _PASSWORD and not flags & _USERNAME:
        raise malformed("3.1.1 CONNECT with a password but no user name (3.1.1 MQTT-3.1.2-22)")


def _read_will(reader: Reader, flags: int, version: int) -> Will:
    properties = read_properties(reader, WILL) if version == MQTT_5 else {}
    topic = reader.string()
    if not topic or has_wildcard(topic):
        raise ProtocolError(Reason.TOPIC_NAME_INVALID, f"Will Topic {topic!r} is not a Topic Name (4.7)")
    payload = reader.binary()
    qos = (flags & _WILL_QOS) >> _WILL_QOS_SHIFT
    return Will(topic, payload, qos, bool(flags & _WILL_RETAIN), properties)


def _decode_connack(reader: Reader, level: int) -> ConnAck:
    flags = reader.byte()
    if flags & ~_SESSION_PRESENT:
        raise malformed("CONNACK with reserved flags set (MQTT-3.2.2-1)")
    if level == MQTT_5:
        reason = _reason(reader, _CONNACK_REASONS, "CONNACK")
        properties = read_properties(reader, PacketType.CONNACK)
    else:
        code = reader.byte()
        if code not in _CONNACK_FROM_311:
            raise malformed(f"3.1.1 CONNACK return code {code} (3.1.1 3.2.2.3)")
        reason, properties = _CONNACK_FROM_311[code], {}
    reader.expect_end("CONNACK")
    if flags and reason:
        raise protocol_error("CONNACK refusing the connection with Session Present set (MQTT-3.2.2-6)")
    return ConnAck(bool(flags), reason, properties)


_Ack = PubAck | PubRec | PubRel | PubComp


def _ack_decoder(
    cls: type[_Ack], packet_type: PacketType, reasons: dict[int, Reason],
) -> Callable[[Reader, int], _Ack]:
    """PUBACK, PUBREC, PUBREL, PUBCOMP: a Packet Identifier, and on MQTT 5 an optional reason and properties."""
    name = packet_type.name

    def decode(reader: Reader, level: int) -> _Ack:
        packet_id = _packet_id(reader)
        if level != MQTT_5 or reader.at_end():  # 3.4.2.1: Remaining Length 2 means success, no properties
            reader.expect_end(name)
            return cls(packet_id)
        reason = _reason(reader, reasons, name)
        # 3.4.2.2.1: with a Remaining Length under 4 there is no Property Length.
        properties = {} if reader.at_end() else read_properties(reader, packet_type)
        reader.expect_end(name)
        return cls(packet_id, reason, properties)

    return decode


def _decode_subscribe(reader: Reader, level: int) -> Subscribe:
    packet_id = _packet_id(reader)
    properties = read_properties(reader, PacketType.SUBSCRIBE) if level == MQTT_5 else {}
    subscriptions = []
    while not reader.at_end():
        topic_filter = reader.string()
        subscriptions.append(_subscription(topic_filter, reader.byte(), level))
    if not subscriptions:
        raise protocol_error("SUBSCRIBE without a Topic Filter (MQTT-3.8.3-2)")
    return Subscribe(packet_id, tuple(subscriptions), properties)


def _subscription(topic_filter: str, options: int, level: int) -> Subscription:
    qos = options & _MAX_QOS
    if level != MQTT_5:
        if options & _OPTIONS_RESERVED_311 or qos == _INVALID_QOS:
            raise malformed(f"3.1.1 SUBSCRIBE options 0x{options:02X} (3.1.1 MQTT-3.8.3-4)")
        return Subscription(topic_filter, qos)
    if options & _OPTIONS_RESERVED_5:
        raise malformed(f"SUBSCRIBE options 0x{options:02X} with reserved bits set (MQTT-3.8.3-5)")
    retain_handling = (options & _RETAIN_HANDLING) >> _RETAIN_HANDLING_SHIFT
    if qos == _INVALID_QOS or retain_handling == 3:
        raise protocol_error(f"SUBSCRIBE options 0x{options:02X}: QoS 3 or Retain Handling 3 (3.8.3.1)")
    no_local = bool(options & _NO_LOCAL)
    if no_local and topic_filter.startswith(_SHARED_PREFIX):
        raise protocol_error("No Local on a Shared Subscription (MQTT-3.8.3-4)")
    return Subscription(topic_filter, qos, no_local, bool(options & _RETAIN_AS_PUBLISHED), retain_handling)


def _decode_suback(reader: Reader, level: int) -> SubAck:
    packet_id = _packet_id(reader)
    if level == MQTT_5:
        properties, reasons = read_properties(reader, PacketType.SUBACK), _SUBACK_REASONS
    else:
        properties, reasons = {}, _SUBACK_REASONS_311
    codes = _reason_list(reader, reasons, "SUBACK")
    return SubAck(packet_id, codes, properties)


def _reason_list(reader: Reader, reasons: dict[int, Reason], packet: str) -> tuple[Reason, ...]:
    """SUBACK and UNSUBACK (3.9.3, 3.11.3): one reason per filter of the request, which has at least one."""
    codes = []
    while not reader.at_end():
        codes.append(_reason(reader, reasons, packet))
    if not codes:
        raise protocol_error(f"{packet} without a reason code")
    return tuple(codes)


def _decode_unsubscribe(reader: Reader, level: int) -> Unsubscribe:
    packet_id = _packet_id(reader)
    properties = read_properties(reader, PacketType.UNSUBSCRIBE) if level == MQTT_5 else {}
    topic_filters = []
    while not reader.at_end():
        topic_filters.append(reader.string())
    if not topic_filters:
        raise protocol_error("UNSUBSCRIBE without a Topic Filter (MQTT-3.10.3-2)")
    return Unsubscribe(packet_id, tuple(topic_filters), properties)


def _decode_unsuback(reader: Reader, level: int) -> UnsubAck:
    packet_id = _packet_id(reader)
    if level != MQTT_5:  # 3.1.1 3.11: just the Packet Identifier
        reader.expect_end("UNSUBACK")
        return UnsubAck(packet_id)
    properties = read_properties(reader, PacketType.UNSUBACK)
    return UnsubAck(packet_id, _reason_list(reader, _UNSUBACK_REASONS, "UNSUBACK"), properties)


def _empty_decoder(cls: type[PingReq | PingResp]) -> Callable[[Reader, int], PingReq | PingResp]:
    name = cls.__name__.upper()

    def decode(reader: Reader, _level: int) -> PingReq | PingResp:
        reader.expect_end(name)  # 3.12.2, 3.13.2: no Variable Header, no Payload
        return cls()

    return decode


def _decode_disconnect(reader: Reader, level: int) -> Disconnect:
    # 3.14.2.1: Remaining Length 0 means Normal disconnection; under 2, no Property Length.
    if level != MQTT_5 or reader.at_end():
        reader.expect_end("DISCONNECT")
        return Disconnect()
    reason = _reason(reader, _DISCONNECT_REASONS, "DISCONNECT")
    properties = {} if reader.at_end() else read_properties(reader, PacketType.DISCONNECT)
    reader.expect_end("DISCONNECT")
    return Disconnect(reason, properties)


def _decode_auth(reader: Reader, _level: int) -> Auth:
    # 3.15.2.1: Remaining Length 0 means Success, no properties; otherwise both are there.
    if reader.at_end():
        return Auth()
    reason = _reason(reader, _AUTH_REASONS, "AUTH")
    properties = read_properties(reader, PacketType.AUTH)
    reader.expect_end("AUTH")
    return Auth(reason, properties)


_Decode = Callable[[Reader, int], Any]
_DECODERS: tuple[_Decode | None, ...] = (
    None,  # 0 is reserved
    _decode_connect,
    _decode_connack,
    None,  # PUBLISH has its own path
    _ack_decoder(PubAck, PacketType.PUBACK, _PUBACK_REASONS),
    _ack_decoder(PubRec, PacketType.PUBREC, _PUBACK_REASONS),
    _ack_decoder(PubRel, PacketType.PUBREL, _PUBREL_REASONS),
    _ack_decoder(PubComp, PacketType.PUBCOMP, _PUBREL_REASONS),
    _decode_subscribe,
    _decode_suback,
    _decode_unsubscribe,
    _decode_unsuback,
    _empty_decoder(PingReq),
    _empty_decoder(PingResp),
    _decode_disconnect,
    _decode_auth,
)


# Encoding.

def encode(packet: Packet, protocol_level: int) -> bytes:
    """The packet's bytes for a connection at ``protocol_level`` (a CONNECT uses its own).

    On 3.1.1, properties and the reason codes the version has no room for are
    left out; a CONNACK's reason becomes the nearest return code, a SUBACK
    failure becomes 0x80. Raises ValueError for a packet no version can carry
    as given (QoS 1 without a Packet Identifier, an AUTH on 3.1.1, ...).
    """
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    return encoder(packet, protocol_level)


def _frame(first: int, body: bytes | bytearray) -> bytes:
    """The fixed header (2.1.1) and the body."""
    return b"".join((_FIRST_BYTES[first], varint(len(body)), body))


_FIRST_BYTES = tuple(bytes((value,)) for value in range(256))


def _first_byte(packet_type: PacketType) -> int:
    return packet_type << _TYPE_SHIFT | _FIXED_FLAGS[packet_type]


def _packet_id_bytes(packet_id: int) -> bytes:
    if not 0 < packet_id <= MAX_UINT16:
        raise ValueError(f"Packet Identifier {packet_id} is not 1 to 65535 (MQTT-2.2.1-3)")
    return _UINT16.pack(packet_id)


def _encode_connect(packet: Connect, _level: int) -> bytes:
    version = packet.protocol_level
    will = packet.will
    flags = _connect_flags(packet)
    if version != MQTT_5 and flags & _PASSWORD and not flags & _USERNAME:
        raise ValueError("a 3.1.1 CONNECT cannot carry a password without a user name (3.1.1 MQTT-3.1.2-22)")
    body = bytearray()
    put_string(body, packet.protocol_name)
    body += bytes((version, flags))
    put_uint16(body, packet.keep_alive)
    if version == MQTT_5:
        body += encode_properties(packet.properties)
    put_string(body, packet.client_id)
    if will is not None:
        if version == MQTT_5:
            body += encode_properties(will.properties)
        put_string(body, will.topic)
        put_binary(body, will.payload)
    if packet.username is not None:
        put_string(body, packet.username)
    if packet.password is not None:
        put_binary(body, packet.password)
    return _frame(_first_byte(PacketType.CONNECT), body)


def _connect_flags(packet: Connect) -> int:
    flags = _CLEAN_START if packet.clean_start else 0
    if packet.will is not None:
        flags |= _WILL_FLAG | _qos(packet.will.qos) << _WILL_QOS_SHIFT | (_WILL_RETAIN if packet.will.retain else 0)
    if packet.username is not None:
        flags |= _USERNAME
    if packet.password is not None:
        flags |= _PASSWORD
    return flags


def _qos(qos: int) -> int:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos}")
    return qos


def _encode_connack(packet: ConnAck, level: int) -> bytes:
    flags = _SESSION_PRESENT if packet.session_present else 0
    if level == MQTT_5:
        body = bytes((flags, packet.reason_code)) + encode_properties(packet.properties)
    else:
        body = bytes((flags, _CONNACK_TO_311.get(packet.reason_code, _NOT_AUTHORIZED_311)))
    return _frame(_first_byte(PacketType.CONNACK), body)


def _encode_publish(packet: Publish, level: int) -> bytes:
    qos = _qos(packet.qos)
    first = _PUBLISH << _TYPE_SHIFT | qos << _QOS_SHIFT
    if packet.dup:
        first |= _DUP
    if packet.retain:
        first |= _RETAIN
    body = bytearray()
    put_string(body, packet.topic)
    if qos:
        if packet.packet_id is None:
            raise ValueError(f"a QoS {qos} PUBLISH needs a Packet Identifier")
        body += _packet_id_bytes(packet.packet_id)
    if level == MQTT_5:
        body += encode_properties(packet.properties)
    return b"".join((_FIRST_BYTES[first], varint(len(body) + len(packet.payload)), body, packet.payload))


def _ack_encoder(packet_type: PacketType) -> Callable[[Any, int], bytes]:
    """PUBACK, PUBREC, PUBREL, PUBCOMP, in the shortest form that carries them (3.4.2.1, 3.4.2.2.1)."""
    first = _first_byte(packet_type)

    def encode_ack(packet: _Ack, level: int) -> bytes:
        if packet.properties and level == MQTT_5:
            reason = bytes((packet.reason_code,))
            return _frame(first, _packet_id_bytes(packet.packet_id) + reason + encode_properties(packet.properties))
        return _encode_short_ack(first, packet.packet_id, packet.reason_code, level)

    return encode_ack


def _encode_short_ack(first: int, packet_id: int, reason_code: int, level: int) -> bytes:
    if not 0 < packet_id <= MAX_UINT16:
        raise ValueError(f"Packet Identifier {packet_id} is not 1 to 65535 (MQTT-2.2.1-3)")
    if reason_code and level == MQTT_5:
        return _ACK_WITH_REASON.pack(first, 3, packet_id, reason_code)
    return _ACK.pack(first, 2, packet_id)


_PUBACK = _first_byte(PacketType.PUBACK)
_PUBREC = _first_byte(PacketType.PUBREC)
_PUBREL = _first_byte(PacketType.PUBREL)
_PUBCOMP = _first_byte(PacketType.PUBCOMP)


def encode_puback(packet_id: int, reason_code: int, protocol_level: int) -> bytes:
    """``encode(PubAck(packet_id, reason_code), protocol_level)`` for the hot path."""
    return _encode_short_ack(_PUBACK, packet_id, reason_code, protocol_level)


def encode_pubrec(packet_id: int, reason_code: int, protocol_level: int) -> bytes:
    """``encode(PubRec(packet_id, reason_code), protocol_level)`` for the hot path."""
    return _encode_short_ack(_PUBREC, packet_id, reason_code, protocol_level)


def encode_pubrel(packet_id: int, reason_code: int, protocol_level: int) -> bytes:
    """``encode(PubRel(packet_id, reason_code), protocol_level)`` for the hot path."""
    return _encode_short_ack(_PUBREL, packet_id, reason_code, protocol_level)


def encode_pubcomp(packet_id: int, reason_code: int, protocol_level: int) -> bytes:
    """``encode(PubComp(packet_id, reason_code), protocol_level)`` for the hot path."""
    return _encode_short_ack(_PUBCOMP, packet_id, reason_code, protocol_level)


def _encode_subscribe(packet: Subscribe, level: int) -> bytes:
    if not packet.subscriptions:
        raise ValueError("a SUBSCRIBE needs a Topic Filter (MQTT-3.8.3-2)")
    body = bytearray(_packet_id_bytes(packet.packet_id))
    if level == MQTT_5:
        body += encode_properties(packet.properties)
    for subscription in packet.subscriptions:
        put_string(body, subscription.topic_filter)
        body.append(_subscription_options(subscription, level))
    return _frame(_first_byte(PacketType.SUBSCRIBE), body)


def _subscription_options(subscription: Subscription, level: int) -> int:
    options = _qos(subscription.qos)
    if level == MQTT_5:
        options |= subscription.retain_handling << _RETAIN_HANDLING_SHIFT
        if subscription.no_local:
            options |= _NO_LOCAL
        if subscription.retain_as_published:
            options |= _RETAIN_AS_PUBLISHED
    return options


def _encode_suback(packet: SubAck, level: int) -> bytes:
    if not packet.reason_codes:
        raise ValueError("a SUBACK needs a reason code per Topic Filter (3.9.3)")
    body = bytearray(_packet_id_bytes(packet.packet_id))
    if level == MQTT_5:
        body += encode_properties(packet.properties)
        body += bytes(packet.reason_codes)
    else:  # 3.1.1 3.9.3: granted QoS 0-2, or 0x80 for any failure
        body += bytes(min(code, _SUBACK_FAILURE_311) for code in packet.reason_codes)
    return _frame(_first_byte(PacketType.SUBACK), body)


def _encode_unsubscribe(packet: Unsubscribe, level: int) -> bytes:
    if not packet.topic_filters:
        raise ValueError("an UNSUBSCRIBE needs a Topic Filter (MQTT-3.10.3-2)")
    body = bytearray(_packet_id_bytes(packet.packet_id))
    if level == MQTT_5:
        body += encode_properties(packet.properties)
    for topic_filter in packet.topic_filters:
        put_string(body, topic_filter)
    return _frame(_first_byte(PacketType.UNSUBSCRIBE), body)


def _encode_unsuback(packet: UnsubAck, level: int) -> bytes:
    body = _packet_id_bytes(packet.packet_id)
    if level == MQTT_5:
        if not packet.reason_codes:
            raise ValueError("an MQTT 5 UNSUBACK needs a reason code per Topic Filter (3.11.3)")
        body += encode_properties(packet.properties) + bytes(packet.reason_codes)
    return _frame(_first_byte(PacketType.UNSUBACK), body)


def _encode_pingreq(_packet: PingReq, _level: int) -> bytes:
    return _frame(_first_byte(PacketType.PINGREQ), b"")


def _encode_pingresp(_packet: PingResp, _level: int) -> bytes:
    return PINGRESP


def _encode_disconnect(packet: Disconnect, level: int) -> bytes:
    """3.14.2.1: no body for a Normal disconnection, then the reason, then properties if any; 3.1.1 has no body."""
    first = _first_byte(PacketType.DISCONNECT)
    if level != MQTT_5 or (not packet.reason_code and not packet.properties):
        return _frame(first, b"")
    reason = bytes((packet.reason_code,))
    return _frame(first, reason + encode_properties(packet.properties) if packet.properties else reason)


def _encode_auth(packet: Auth, level: int) -> bytes:
    """3.15.2.1: no body for Success without properties, else the reason and the properties."""
    if level != MQTT_5:
        raise ValueError("AUTH exists only in MQTT 5")
    first = _first_byte(PacketType.AUTH)
    if not packet.reason_code and not packet.properties:
        return _frame(first, b"")
    return _frame(first, bytes((packet.reason_code,)) + encode_properties(packet.properties))


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Connect: _encode_connect,
    ConnAck: _encode_connack,
    Publish: _encode_publish,
    PubAck: _ack_encoder(PacketType.PUBACK),
    PubRec: _ack_encoder(PacketType.PUBREC),
    PubRel: _ack_encoder(PacketType.PUBREL),
    PubComp: _ack_encoder(PacketType.PUBCOMP),
    Subscribe: _encode_subscribe,
    SubAck: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    UnsubAck: _encode_unsuback,
    PingReq: _encode_pingreq,
    PingResp: _encode_pingresp,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}
