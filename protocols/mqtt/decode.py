"""MQTT 3.1.1 and 5.0 control packets from bytes, strictly.

:class:`Decoder` turns one connection's byte stream into packets and raises
:class:`ProtocolError` (nothing else, whatever the bytes) at the first
violation it can see in a packet alone, with the MQTT 5 reason code for it.
What needs the session's state (the first packet must be a CONNECT, a second
CONNECT, Topic Alias Maximum, Receive Maximum, which side may send what) or
is answered per item instead of by closing (a Topic Filter's syntax: SUBACK
0x8F) is the session's to check; :attr:`Decoder.protocol_level` stays None
until a CONNECT is decoded so it can.

Spec references are to MQTT 5 (OASIS, 2019) unless they say 3.1.1; the
normative statement ids (MQTT-x.y.z-n) are the same in both where they
exist in both.
"""

from __future__ import annotations

from fleetgate.protocols.mqtt.bodies import decode_body
from fleetgate.protocols.mqtt.datatypes import (
    ProtocolError,
    Reader,
    has_wildcard,
    malformed,
    protocol_error,
    read_varint,
)
from fleetgate.protocols.mqtt.packets import (
    MQTT_5,
    Connect,
    Packet,
    PacketType,
    Properties,
    Property,
    Publish,
    Reason,
)
from fleetgate.protocols.mqtt.properties import read_properties
from fleetgate.protocols.mqtt.wire import (
    DUP,
    INVALID_QOS,
    MAX_PACKET_SIZE,
    PUBLISH,
    QOS,
    QOS_SHIFT,
    RETAIN,
    TYPE_SHIFT,
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
            if first >> TYPE_SHIFT == PUBLISH:
                append(_decode_publish(data, first, start, end, level))
            else:
                packet = decode_body(Reader(data, start, end), first, level)
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
    raise RuntimeError("Publish's fields changed: update decode._PUBLISH_FIELDS and _decode_publish")


def _decode_publish(data: bytes, first: int, start: int, end: int, level: int | None) -> Publish:
    qos = (first & QOS) >> QOS_SHIFT
    if qos == INVALID_QOS:
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
    elif first & DUP:
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
    _set_retain(packet, first & RETAIN == RETAIN)
    _set_dup(packet, first & DUP == DUP)
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
