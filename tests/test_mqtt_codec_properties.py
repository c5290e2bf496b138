"""Properties of the MQTT codec over generated packets and bytes (hypothesis).

1. Every valid packet of either version decodes back to itself (less what
   3.1.1 cannot carry), however the bytes are cut into feeds.
2. No bytes at all, random or a valid encoding damaged, make the decoder raise
   anything but ProtocolError.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetgate.protocols.mqtt.codec import MAX_PACKET_SIZE, Decoder, ProtocolError, encode
from fleetgate.protocols.mqtt.packets import (
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
from fleetgate.protocols.mqtt.properties import (
    ALLOWED,
    BINARY_PROPERTIES,
    BYTE_PROPERTIES,
    STRING_PROPERTIES,
    UINT16_PROPERTIES,
    UINT32_PROPERTIES,
    WILL,
)

P = Property
R = Reason

# Bounded for CI: the whole file runs in a few seconds. No example database: it would be written
# into the working tree.
BOUNDED = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

LEVELS = st.sampled_from([MQTT_311, MQTT_5])

# Reason codes by packet (MQTT 5 2.4, Table 2-6), written out again as the test's own oracle.
CONNACK_REASONS = [0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95,
                   0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F]
PUBACK_REASONS = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
PUBREL_REASONS = [0x00, 0x92]
SUBACK_REASONS = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]
UNSUBACK_REASONS = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]
DISCONNECT_REASONS = [0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
                      0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2]
AUTH_REASONS = [0x00, 0x18, 0x19]

# What 3.1.1 makes of a CONNACK reason: its return code (3.1.1 3.2.2.3), decoded back.
CONNACK_311 = {
    R.SUCCESS: R.SUCCESS,
    R.UNSUPPORTED_PROTOCOL_VERSION: R.UNSUPPORTED_PROTOCOL_VERSION,
    R.CLIENT_IDENTIFIER_NOT_VALID: R.CLIENT_IDENTIFIER_NOT_VALID,
    **dict.fromkeys([R.SERVER_UNAVAILABLE, R.SERVER_BUSY, R.UNSPECIFIED_ERROR, R.IMPLEMENTATION_SPECIFIC_ERROR,
                     R.USE_ANOTHER_SERVER, R.SERVER_MOVED, R.CONNECTION_RATE_EXCEEDED, R.QUOTA_EXCEEDED],
                    R.SERVER_UNAVAILABLE),
}

# Strings: any Unicode scalar value but U+0000 (MQTT-1.5.4-1, MQTT-1.5.4-2).
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
topic_names = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00+#"), min_size=1,
                      max_size=12)
topic_filters = st.one_of(text.filter(bool), st.sampled_from(["a/#", "+/b", "#", "$share/g/a", "v2/r/req/+"]))
packet_ids = st.integers(1, 0xFFFF)
payloads = st.binary(max_size=48)
qos_levels = st.integers(0, 2)


def property_values(prop: Property, context: int) -> st.SearchStrategy[Any]:
    """Valid values of one property (2.2.2.2)."""
    if prop in BYTE_PROPERTIES:
        return st.integers(0, 1)
    if prop in (P.RECEIVE_MAXIMUM, P.TOPIC_ALIAS):
        return st.integers(1, 0xFFFF)
    if prop in UINT16_PROPERTIES:
        return st.integers(0, 0xFFFF)
    if prop is P.MAXIMUM_PACKET_SIZE:
        return st.integers(1, 0xFFFF_FFFF)
    if prop in UINT32_PROPERTIES:
        return st.integers(0, 0xFFFF_FFFF)
    if prop is P.SUBSCRIPTION_IDENTIFIER:
        identifiers = st.integers(1, 268_435_455)
        if context == PacketType.PUBLISH:  # a PUBLISH carries one per matching subscription (3.3.2.3.8)
            return st.lists(identifiers, min_size=1, max_size=3).map(tuple)
        return identifiers
    if prop is P.RESPONSE_TOPIC:
        return topic_names
    if prop in STRING_PROPERTIES:
        return text
    if prop in BINARY_PROPERTIES:
        return st.binary(max_size=16)
    assert prop is P.USER_PROPERTY
    return st.lists(st.tuples(text, text), min_size=1, max_size=3).map(tuple)


def _without_orphan_authentication_data(properties: Properties) -> Properties:
    """3.1.2.11.10: Authentication Data only with an Authentication Method."""
    if P.AUTHENTICATION_METHOD not in properties:
        properties.pop(P.AUTHENTICATION_DATA, None)
    return properties


def properties_for(context: int, level: int) -> st.SearchStrategy[Properties]:
    if level != MQTT_5:
        return st.just({})
    optional = {prop: property_values(prop, context) for prop in ALLOWED[context]}
    return st.fixed_dictionaries({}, optional=optional).map(_without_orphan_authentication_data)


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(draw(topic_names), draw(payloads), draw(qos_levels), draw(st.booleans()),
                    draw(properties_for(WILL, level)))
    username = draw(st.none() | text)
    password = draw(st.none() | st.binary(max_size=8))
    if level == MQTT_311 and username is None:
        password = None  # 3.1.1 MQTT-3.1.2-22
    return Connect(level, draw(text), draw(st.booleans()), draw(st.integers(0, 0xFFFF)), username, password, will,
                   draw(properties_for(PacketType.CONNECT, level)))


@st.composite
def connacks(draw: st.DrawFn, level: int) -> ConnAck:
    reason = draw(st.sampled_from(CONNACK_REASONS))
    session_present = draw(st.booleans()) and reason == R.SUCCESS  # MQTT-3.2.2-6
    return ConnAck(session_present, reason, draw(properties_for(PacketType.CONNACK, level)))


@st.composite
def publishes(draw: st.DrawFn, level: int) -> Publish:
    qos = draw(qos_levels)
    properties = draw(properties_for(PacketType.PUBLISH, level))
    topic = draw(topic_names)
    if P.TOPIC_ALIAS in properties and draw(st.booleans()):
        topic = ""  # 3.3.2.3.4: the alias stands for it
    return Publish(topic, draw(payloads), qos, draw(st.booleans()), qos > 0 and draw(st.booleans()),
                   draw(packet_ids) if qos else None, properties)


def acks(cls: type[PubAck | PubRec | PubRel | PubComp], packet_type: PacketType, reasons: list[int],
         level: int) -> st.SearchStrategy[Packet]:
    return st.builds(cls, packet_ids, st.sampled_from(reasons), properties_for(packet_type, level))


def subscriptions(level: int) -> st.SearchStrategy[Subscription]:
    def valid(subscription: Subscription) -> Subscription:
        if subscription.topic_filter.startswith("$share/"):  # MQTT-3.8.3-4
            return dataclasses.replace(subscription, no_local=False)
        return subscription

    retain_handling = st.integers(0, 2)
    return st.builds(Subscription, topic_filters, qos_levels, st.booleans(), st.booleans(), retain_handling).map(valid)


def some(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(strategy, min_size=1, max_size=4).map(tuple)


def packets(level: int) -> st.SearchStrategy[Packet]:
    """Every packet type valid in ``level``, MQTT 5 ones with any properties allowed in them."""
    def props(packet_type: PacketType) -> st.SearchStrategy[Properties]:
        return properties_for(packet_type, level)

    choices = [
        connects(level),
        connacks(level),
        publishes(level),
        acks(PubAck, PacketType.PUBACK, PUBACK_REASONS, level),
        acks(PubRec, PacketType.PUBREC, PUBACK_REASONS, level),
        acks(PubRel, PacketType.PUBREL, PUBREL_REASONS, level),
        acks(PubComp, PacketType.PUBCOMP, PUBREL_REASONS, level),
        st.builds(Subscribe, packet_ids, some(subscriptions(level)), props(PacketType.SUBSCRIBE)),
        st.builds(SubAck, packet_ids, some(st.sampled_from(SUBACK_REASONS)), props(PacketType.SUBACK)),
        st.builds(Unsubscribe, packet_ids, some(topic_filters), props(PacketType.UNSUBSCRIBE)),
        st.builds(UnsubAck, packet_ids, some(st.sampled_from(UNSUBACK_REASONS)), props(PacketType.UNSUBACK)),
        st.just(PingReq()),
        st.just(PingResp()),
        st.builds(Disconnect, st.sampled_from(DISCONNECT_REASONS), props(PacketType.DISCONNECT)),
    ]
    if level == MQTT_5:
        choices.append(st.builds(Auth, st.sampled_from(AUTH_REASONS), props(PacketType.AUTH)))
    return st.one_of(choices)


any_level_packets = LEVELS.flatmap(lambda level: st.tuples(st.just(level), packets(level)))


def carried_by(packet: Packet, level: int) -> Packet:
    """What a packet is after a trip through ``level``: on 3.1.1, no properties and fewer reasons."""
    if level == MQTT_5:
        return packet
    replace = dataclasses.replace
    if isinstance(packet, ConnAck):
        return ConnAck(packet.session_present, CONNACK_311.get(R(packet.reason_code), R.NOT_AUTHORIZED))
    if isinstance(packet, PubAck | PubRec | PubRel | PubComp):
        return type(packet)(packet.packet_id)
    if isinstance(packet, Subscribe):
        return Subscribe(packet.packet_id, tuple(Subscription(s.topic_filter, s.qos) for s in packet.subscriptions))
    if isinstance(packet, SubAck):
        return SubAck(packet.packet_id, tuple(min(code, 0x80) for code in packet.reason_codes))
    if isinstance(packet, UnsubAck):
        return UnsubAck(packet.packet_id)
    if isinstance(packet, Disconnect):
        return Disconnect()
    if isinstance(packet, Connect) and packet.will is not None:
        return replace(packet, will=replace(packet.will, properties={}))
    if isinstance(packet, Connect | Publish | Unsubscribe):
        return replace(packet, properties={})
    return packet


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` in chunks split at ``cuts`` (positions, any order, out of range ones ignored)."""
    points = sorted({0, len(data), *(c for c in cuts if 0 < c < len(data))})
    return [data[a:b] for a, b in zip(points, points[1:])]


cut_points = st.lists(st.integers(0, 400), max_size=12)


@BOUNDED
@given(any_level_packets, cut_points)
def test_every_valid_packet_decodes_to_itself_in_any_chunking(level_and_packet: tuple[int, Packet],
                                                              cuts: list[int]) -> None:
    level, packet = level_and_packet
    data = encode(packet, level)
    decoder = Decoder(protocol_level=None if isinstance(packet, Connect) else level)
    decoded = [p for chunk in cut(data, cuts) for p in decoder.feed(chunk)]
    assert decoded == [carried_by(packet, level)]
    assert decoder.buffered == 0


@BOUNDED
@given(LEVELS.flatmap(lambda level: st.tuples(st.just(level), st.lists(packets(level), max_size=6))), cut_points)
def test_a_stream_of_packets_decodes_to_the_same_stream(level_and_packets: tuple[int, list[Packet]],
                                                       cuts: list[int]) -> None:
    level, stream = level_and_packets
    data = b"".join(encode(packet, level) for packet in stream)
    decoder = Decoder(protocol_level=level)
    assert [p for chunk in cut(data, cuts) for p in decoder.feed(chunk)] == [carried_by(p, level) for p in stream]


# 2: nothing but ProtocolError.

CONNECTS = [b"", encode(Connect(MQTT_311, "d"), MQTT_311), encode(Connect(MQTT_5, "d"), MQTT_5)]
prefixes = st.sampled_from(CONNECTS)
limits = st.sampled_from([MAX_PACKET_SIZE, 64])


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """A plausible fixed header (any type and flags, a correct length) around random bytes: reaches the bodies."""
    body = draw(st.binary(max_size=64))
    first = draw(st.integers(0, 255))
    return bytes((first,)) + _varint(len(body)) + body


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, byte = divmod(value, 128)
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid stream of either version, then bits flipped, bytes inserted or deleted, or the end cut."""
    level = draw(LEVELS)
    data = bytearray(b"".join(encode(packet, level) for packet in draw(st.lists(packets(level), min_size=1,
                                                                                max_size=3))))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del data[position:position + draw(st.integers(1, 4))]
        else:
            del data[position:]
    return bytes(data)


def feed_all(decoder: Decoder, data: bytes, cuts: list[int]) -> None:
    """Feed every chunk; a ProtocolError ends the stream, as it ends the connection."""
    try:
        for chunk in cut(data, cuts):
            decoder.feed(chunk)
    except ProtocolError as error:
        assert Reason.UNSPECIFIED_ERROR <= error.reason_code <= Reason.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
        with pytest.raises(ProtocolError):
            decoder.feed(b"\xc0\x00")  # the stream has lost its framing for good


@BOUNDED
@given(prefixes, st.binary(max_size=200), cut_points, limits)
def test_random_bytes_raise_only_protocol_error(prefix: bytes, data: bytes, cuts: list[int], limit: int) -> None:
    feed_all(Decoder(max_packet_size=limit), prefix + data, cuts)


@BOUNDED
@given(prefixes, st.lists(framed_garbage(), min_size=1, max_size=4), cut_points, limits)
def test_framed_random_bodies_raise_only_protocol_error(prefix: bytes, frames: list[bytes], cuts: list[int],
                                                        limit: int) -> None:
    feed_all(Decoder(max_packet_size=limit), prefix + b"".join(frames), cuts)


@BOUNDED
@given(prefixes, damaged(), cut_points, limits)
def test_damaged_encodings_raise_only_protocol_error(prefix: bytes, data: bytes, cuts: list[int], limit: int) -> None:
    feed_all(Decoder(max_packet_size=limit), prefix + data, cuts)
