"""MQTT 5 properties (section 2.2.2): which may appear in which packet, their types and their checks.

A decoded property block is a dict from :class:`Property` to its value: an int
for the integer types, str for UTF-8 strings, bytes for Binary Data; User
Property maps to a tuple of (name, value) pairs, and Subscription Identifier
in a PUBLISH (which may carry several, 3.3.2.3.8) to a tuple of ints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fleetgate.protocols.mqtt.datatypes import (
    ProtocolError,
    Reader,
    has_wildcard,
    malformed,
    protocol_error,
    put_binary,
    put_string,
    put_uint16,
    put_uint32,
    varint,
)
from fleetgate.protocols.mqtt.packets import PacketType, Properties, Property, Reason

P = Property  # short, for the tables below

WILL = 0
"""Keys the Will Properties of a CONNECT (3.1.3.2) in :data:`ALLOWED`; 0 is no packet type."""

# Table 2-4 of MQTT 5 (2.2.2.2): where each property may appear.
_EVERYWHERE_WITH_PROPERTIES = frozenset({P.USER_PROPERTY})
_ACK_PROPERTIES = frozenset({P.REASON_STRING, P.USER_PROPERTY})
_MESSAGE_PROPERTIES = frozenset({
    P.PAYLOAD_FORMAT_INDICATOR, P.MESSAGE_EXPIRY_INTERVAL, P.CONTENT_TYPE, P.RESPONSE_TOPIC,
    P.CORRELATION_DATA, P.USER_PROPERTY,
})
ALLOWED: dict[int, frozenset[Property]] = {
    PacketType.CONNECT: frozenset({
        P.SESSION_EXPIRY_INTERVAL, P.AUTHENTICATION_METHOD, P.AUTHENTICATION_DATA,
        P.REQUEST_PROBLEM_INFORMATION, P.REQUEST_RESPONSE_INFORMATION, P.RECEIVE_MAXIMUM,
        P.TOPIC_ALIAS_MAXIMUM, P.USER_PROPERTY, P.MAXIMUM_PACKET_SIZE,
    }),
    WILL: _MESSAGE_PROPERTIES | {P.WILL_DELAY_INTERVAL},
    PacketType.CONNACK: frozenset({
        P.SESSION_EXPIRY_INTERVAL, P.ASSIGNED_CLIENT_IDENTIFIER, P.SERVER_KEEP_ALIVE,
        P.AUTHENTICATION_METHOD, P.AUTHENTICATION_DATA, P.RESPONSE_INFORMATION, P.SERVER_REFERENCE,
        P.REASON_STRING, P.RECEIVE_MAXIMUM, P.TOPIC_ALIAS_MAXIMUM, P.MAXIMUM_QOS, P.RETAIN_AVAILABLE,
        P.USER_PROPERTY, P.MAXIMUM_PACKET_SIZE, P.WILDCARD_SUBSCRIPTION_AVAILABLE,
        P.SUBSCRIPTION_IDENTIFIER_AVAILABLE, P.SHARED_SUBSCRIPTION_AVAILABLE,
    }),
    PacketType.PUBLISH: _MESSAGE_PROPERTIES | {P.SUBSCRIPTION_IDENTIFIER, P.TOPIC_ALIAS},
    PacketType.PUBACK: _ACK_PROPERTIES,
    PacketType.PUBREC: _ACK_PROPERTIES,
    PacketType.PUBREL: _ACK_PROPERTIES,
    PacketType.PUBCOMP: _ACK_PROPERTIES,
    PacketType.SUBSCRIBE: frozenset({P.SUBSCRIPTION_IDENTIFIER, P.USER_PROPERTY}),
    PacketType.SUBACK: _ACK_PROPERTIES,
    PacketType.UNSUBSCRIBE: _EVERYWHERE_WITH_PROPERTIES,
    PacketType.UNSUBACK: _ACK_PROPERTIES,
    PacketType.DISCONNECT: frozenset({
        P.SESSION_EXPIRY_INTERVAL, P.SERVER_REFERENCE, P.REASON_STRING, P.USER_PROPERTY,
    }),
    PacketType.AUTH: frozenset({
        P.AUTHENTICATION_METHOD, P.AUTHENTICATION_DATA, P.REASON_STRING, P.USER_PROPERTY,
    }),
}

# 2.2.2.2: the data type of each property.
BYTE_PROPERTIES = frozenset({
    P.PAYLOAD_FORMAT_INDICATOR, P.REQUEST_PROBLEM_INFORMATION, P.REQUEST_RESPONSE_INFORMATION,
    P.MAXIMUM_QOS, P.RETAIN_AVAILABLE, P.WILDCARD_SUBSCRIPTION_AVAILABLE,
    P.SUBSCRIPTION_IDENTIFIER_AVAILABLE, P.SHARED_SUBSCRIPTION_AVAILABLE,
})
UINT16_PROPERTIES = frozenset({P.SERVER_KEEP_ALIVE, P.RECEIVE_MAXIMUM, P.TOPIC_ALIAS_MAXIMUM, P.TOPIC_ALIAS})
UINT32_PROPERTIES = frozenset({
    P.MESSAGE_EXPIRY_INTERVAL, P.SESSION_EXPIRY_INTERVAL, P.WILL_DELAY_INTERVAL, P.MAXIMUM_PACKET_SIZE,
})
VARINT_PROPERTIES = frozenset({P.SUBSCRIPTION_IDENTIFIER})
STRING_PROPERTIES = frozenset({
    P.CONTENT_TYPE, P.RESPONSE_TOPIC, P.ASSIGNED_CLIENT_IDENTIFIER, P.AUTHENTICATION_METHOD,
    P.RESPONSE_INFORMATION, P.SERVER_REFERENCE, P.REASON_STRING,
})
BINARY_PROPERTIES = frozenset({P.CORRELATION_DATA, P.AUTHENTICATION_DATA})

_Check = Callable[[Any], None]


def _flag(prop: Property) -> _Check:
    def check(value: int) -> None:
        if value > 1:  # e.g. 3.1.2.11.7, 3.2.2.3.4: "a value other than 0 or 1"
            raise protocol_error(f"{prop.name} is {value}, not 0 or 1")
    return check


def _nonzero(prop: Property, reason: int = Reason.PROTOCOL_ERROR) -> _Check:
    def check(value: int) -> None:
        if value == 0:
            raise ProtocolError(reason, f"{prop.name} is 0")
    return check


def _check_response_topic(topic: str) -> None:
    # MQTT-3.3.2-14: a Topic Name, so no wildcards, and at least one character (MQTT-4.7.3-1).
    if not topic or has_wildcard(topic):
        raise protocol_error(f"Response Topic {topic!r} is not a valid Topic Name (MQTT-3.3.2-14)")


_CHECKS: dict[Property, _Check] = {
    **{prop: _flag(prop) for prop in BYTE_PROPERTIES},
    P.RECEIVE_MAXIMUM: _nonzero(P.RECEIVE_MAXIMUM),  # 3.1.2.11.3, 3.2.2.3.3
    P.MAXIMUM_PACKET_SIZE: _nonzero(P.MAXIMUM_PACKET_SIZE),  # 3.1.2.11.4, 3.2.2.3.6
    P.SUBSCRIPTION_IDENTIFIER: _nonzero(P.SUBSCRIPTION_IDENTIFIER),  # 3.3.2.3.8, 3.8.2.1.2
    P.TOPIC_ALIAS: _nonzero(P.TOPIC_ALIAS, Reason.TOPIC_ALIAS_INVALID),  # MQTT-3.3.2-8
    P.RESPONSE_TOPIC: _check_response_topic,
}


def _read_pair(reader: Reader) -> tuple[str, str]:
    return reader.string(), reader.string()


_READERS: dict[Property, Callable[[Reader], Any]] = {
    **{prop: Reader.byte for prop in BYTE_PROPERTIES},
    **{prop: Reader.uint16 for prop in UINT16_PROPERTIES},
    **{prop: Reader.uint32 for prop in UINT32_PROPERTIES},
    **{prop: Reader.varint for prop in VARINT_PROPERTIES},
    **{prop: Reader.string for prop in STRING_PROPERTIES},
    **{prop: Reader.binary for prop in BINARY_PROPERTIES},
    P.USER_PROPERTY: _read_pair,
}
_BY_IDENTIFIER: dict[int, Property] = {prop.value: prop for prop in Property}


def read_properties(reader: Reader, context: int) -> Properties:
    """The property block at the reader (its length, then the properties) for packet type ``context``.

    An identifier that is unknown or not allowed in the packet is a Malformed
    Packet (2.2.2.2); a property other than User Property (and Subscription
    Identifier in a PUBLISH) appearing twice is a Protocol Error (e.g. 3.1.2.11.2).
    """
    length = reader.varint()
    if not length:
        return {}
    limit = reader.pos + length
    if limit > reader.end:
        raise malformed(f"property length {length} runs past the end of the packet")
    outer_end, reader.end = reader.end, limit
    properties = _read_block(reader, context)
    reader.end = outer_end
    return properties


def _repeatable(prop: Property, context: int) -> bool:
    """Every other property is a Protocol Error to include more than once (2.2.2.2, 3.3.2.3.8)."""
    return prop is P.USER_PROPERTY or (prop is P.SUBSCRIPTION_IDENTIFIER and context == PacketType.PUBLISH)


def _read_block(reader: Reader, context: int) -> Properties:
    allowed = ALLOWED[context]
    properties: dict[Property, Any] = {}
    repeated: dict[Property, list[Any]] = {}
    while not reader.at_end():
        # 2.2.2.2: identifiers are Variable Byte Integers, but every defined one is a single byte,
        # so a byte with the continuation bit can only start an unknown identifier.
        identifier = reader.byte()
        prop = _BY_IDENTIFIER.get(identifier)
        if prop is None:
            raise malformed(f"unknown property identifier 0x{identifier:02X}")
        if prop not in allowed:
            raise malformed(f"{prop.name} is not allowed in this packet")
        value = _READERS[prop](reader)
        check = _CHECKS.get(prop)
        if check is not None:
            check(value)
        if _repeatable(prop, context):
            repeated.setdefault(prop, []).append(value)
        elif prop in properties:
            raise protocol_error(f"{prop.name} appears more than once")
        else:
            properties[prop] = value
    for prop, values in repeated.items():
        properties[prop] = tuple(values)
    if P.AUTHENTICATION_DATA in properties and P.AUTHENTICATION_METHOD not in properties:
        raise protocol_error("Authentication Data without an Authentication Method (3.1.2.11.10)")
    return properties


# Encoding.

def _put_byte(out: bytearray, value: int) -> None:
    out.append(value)  # ValueError unless 0..255


def _put_varint(out: bytearray, value: int) -> None:
    out += varint(value)


def _put_pair(out: bytearray, pair: tuple[str, str]) -> None:
    name, value = pair
    put_string(out, name)
    put_string(out, value)


_WRITERS: dict[Property, Callable[[bytearray, Any], None]] = {
    **{prop: _put_byte for prop in BYTE_PROPERTIES},
    **{prop: put_uint16 for prop in UINT16_PROPERTIES},
    **{prop: put_uint32 for prop in UINT32_PROPERTIES},
    **{prop: _put_varint for prop in VARINT_PROPERTIES},
    **{prop: put_string for prop in STRING_PROPERTIES},
    **{prop: put_binary for prop in BINARY_PROPERTIES},
    P.USER_PROPERTY: _put_pair,
}
_NO_PROPERTIES = b"\x00"


def _each(prop: Property, value: Any) -> Iterable[Any]:
    """The values written as one property each: User Property pairs, a PUBLISH's Subscription Identifiers."""
    if prop is P.USER_PROPERTY or (prop is P.SUBSCRIPTION_IDENTIFIER and not isinstance(value, int)):
        return value
    return (value,)


def encode_properties(properties: Properties) -> bytes:
    """A property block: its Variable Byte Integer length, then each property (2.2.2)."""
    if not properties:
        return _NO_PROPERTIES
    out = bytearray()
    for key, value in properties.items():
        prop = Property(key)  # ValueError for an unknown identifier
        write = _WRITERS[prop]
        for item in _each(prop, value):
            out.append(prop)
            write(out, item)
    return varint(len(out)) + out
