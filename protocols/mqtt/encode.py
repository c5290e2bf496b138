"""MQTT 3.1.1 and 5.0 control packets to bytes.

:func:`encode` writes any packet in either version, dropping what 3.1.1
cannot carry (properties, most reason codes). Spec references are to MQTT 5
(OASIS, 2019) unless they say 3.1.1; the normative statement ids
(MQTT-x.y.z-n) are the same in both where they exist in both.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from fleetgate.protocols.mqtt.datatypes import (
    MAX_UINT16,
    put_binary,
    put_string,
    put_uint16,
    varint,
)
from fleetgate.protocols.mqtt.packets import (
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from fleetgate.protocols.mqtt.properties import encode_properties
from fleetgate.protocols.mqtt.wire import (
    CLEAN_START,
    CONNACK_TO_311,
    DUP,
    FIXED_FLAGS,
    NO_LOCAL,
    NOT_AUTHORIZED_311,
    PASSWORD,
    PUBLISH,
    QOS_SHIFT,
    RETAIN,
    RETAIN_AS_PUBLISHED,
    RETAIN_HANDLING_SHIFT,
    SESSION_PRESENT,
    SUBACK_FAILURE_311,
    TYPE_SHIFT,
    USERNAME,
    WILL_FLAG,
    WILL_QOS_SHIFT,
    WILL_RETAIN,
)

PINGRESP = b"\xd0\x00"  # the whole PINGRESP (3.13), the same in both versions

# Kept here rather than in wire.py: CPython 3.11 compiles ``name.pack(...)`` as a method call only
# when ``name`` was not bound by an import, which is worth a quarter of encode_puback's time.
_UINT16 = struct.Struct(">H")
_ACK = struct.Struct(">BBH")
_ACK_WITH_REASON = struct.Struct(">BBHB")


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
    return packet_type << TYPE_SHIFT | FIXED_FLAGS[packet_type]


def _packet_id_bytes(packet_id: int) -> bytes:
    if not 0 < packet_id <= MAX_UINT16:
        raise ValueError(f"Packet Identifier {packet_id} is not 1 to 65535 (MQTT-2.2.1-3)")
    return _UINT16.pack(packet_id)


def _encode_connect(packet: Connect, _level: int) -> bytes:
    version = packet.protocol_level
    will = packet.will
    flags = _connect_flags(packet)
    if version != MQTT_5 and flags & PASSWORD and not flags & USERNAME:
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
    flags = CLEAN_START if packet.clean_start else 0
    if packet.will is not None:
        flags |= WILL_FLAG | _qos(packet.will.qos) << WILL_QOS_SHIFT | (WILL_RETAIN if packet.will.retain else 0)
    if packet.username is not None:
        flags |= USERNAME
    if packet.password is not None:
        flags |= PASSWORD
    return flags


def _qos(qos: int) -> int:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos}")
    return qos


def _encode_connack(packet: ConnAck, level: int) -> bytes:
    flags = SESSION_PRESENT if packet.session_present else 0
    if level == MQTT_5:
        body = bytes((flags, packet.reason_code)) + encode_properties(packet.properties)
    else:
        body = bytes((flags, CONNACK_TO_311.get(packet.reason_code, NOT_AUTHORIZED_311)))
    return _frame(_first_byte(PacketType.CONNACK), body)


def _encode_publish(packet: Publish, level: int) -> bytes:
    qos = _qos(packet.qos)
    first = PUBLISH << TYPE_SHIFT | qos << QOS_SHIFT
    if packet.dup:
        first |= DUP
    if packet.retain:
        first |= RETAIN
    body = bytearray()
    put_string(body, packet.topic)
    if qos:
        if packet.packet_id is None:
            raise ValueError(f"a QoS {qos} PUBLISH needs a Packet Identifier")
        body += _packet_id_bytes(packet.packet_id)
    if level == MQTT_5:
        body += encode_properties(packet.properties)
    return b"".join((_FIRST_BYTES[first], varint(len(body) + len(packet.payload)), body, packet.payload))


_Ack = PubAck | PubRec | PubRel | PubComp


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
        options |= subscription.retain_handling << RETAIN_HANDLING_SHIFT
        if subscription.no_local:
            options |= NO_LOCAL
        if subscription.retain_as_published:
            options |= RETAIN_AS_PUBLISHED
    return options


def _encode_suback(packet: SubAck, level: int) -> bytes:
    if not packet.reason_codes:
        raise ValueError("a SUBACK needs a reason code per Topic Filter (3.9.3)")
    body = bytearray(_packet_id_bytes(packet.packet_id))
    if level == MQTT_5:
        body += encode_properties(packet.properties)
        body += bytes(packet.reason_codes)
    else:  # 3.1.1 3.9.3: granted QoS 0-2, or 0x80 for any failure
        body += bytes(min(code, SUBACK_FAILURE_311) for code in packet.reason_codes)
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
