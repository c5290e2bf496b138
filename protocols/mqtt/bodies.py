"""The variable headers and payloads of every MQTT packet but PUBLISH, by packet type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetgate.protocols.mqtt.datatypes import (
    ProtocolError,
    Reader,
    has_wildcard,
    malformed,
    protocol_error,
)
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
    PubAck,
    PubComp,
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
from fleetgate.protocols.mqtt.properties import WILL, read_properties
from fleetgate.protocols.mqtt.wire import (
    AUTH_REASONS,
    CLEAN_START,
    CONNACK_FROM_311,
    CONNACK_REASONS,
    CONNECT_RESERVED,
    DISCONNECT_REASONS,
    FIXED_FLAGS,
    FLAGS,
    INVALID_QOS,
    MAX_QOS,
    NO_LOCAL,
    OPTIONS_RESERVED_5,
    OPTIONS_RESERVED_311,
    PASSWORD,
    PUBACK_REASONS,
    PUBREL_REASONS,
    RETAIN_AS_PUBLISHED,
    RETAIN_HANDLING,
    RETAIN_HANDLING_SHIFT,
    SESSION_PRESENT,
    SHARED_PREFIX,
    SUBACK_REASONS,
    SUBACK_REASONS_311,
    TYPE_SHIFT,
    UNSUBACK_REASONS,
    USERNAME,
    WILL_FLAG,
    WILL_QOS,
    WILL_QOS_SHIFT,
    WILL_RETAIN,
)


def decode_body(reader: Reader, first: int, level: int | None) -> Packet:
    """Every packet but PUBLISH (which has its own fast path), through a Reader bounded to it."""
    packet_type = first >> TYPE_SHIFT
    decoder = _DECODERS[packet_type]
    if decoder is None or (packet_type == PacketType.AUTH and level != MQTT_5):
        raise malformed(f"reserved packet type {packet_type} (2.1.2)")
    if first & FLAGS != FIXED_FLAGS[packet_type]:
        raise malformed(f"fixed header flags 0x{first & FLAGS:X} for {PacketType(packet_type).name} (MQTT-2.1.3-1)")
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
    will = _read_will(reader, flags, version) if flags & WILL_FLAG else None
    username = reader.string() if flags & USERNAME else None
    password = reader.binary() if flags & PASSWORD else None
    reader.expect_end("CONNECT")
    return Connect(
        version, client_id, bool(flags & CLEAN_START), keep_alive, username, password, will, properties,
    )


def _check_connect_flags(flags: int, version: int) -> None:
    if flags & CONNECT_RESERVED:
        raise malformed("CONNECT with the reserved flag set (MQTT-3.1.2-3)")
    will_qos = (flags & WILL_QOS) >> WILL_QOS_SHIFT
    if flags & WILL_FLAG:
        if will_qos == INVALID_QOS:
            raise malformed("CONNECT with Will QoS 3 (MQTT-3.1.2-12)")
    elif will_qos or flags & WILL_RETAIN:
        raise malformed("CONNECT with Will QoS or Will Retain but no Will Flag (MQTT-3.1.2-11, MQTT-3.1.2-13)")
    if version == MQTT_311 and flags & PASSWORD and not flags & USERNAME:
        raise malformed("3.1.1 CONNECT with a password but no user name (3.1.1 MQTT-3.1.2-22)")


def _read_will(reader: Reader, flags: int, version: int) -> Will:
    properties = read_properties(reader, WILL) if version == MQTT_5 else {}
    topic = reader.string()
    if not topic or has_wildcard(topic):
        raise ProtocolError(Reason.TOPIC_NAME_INVALID, f"Will Topic {topic!r} is not a Topic Name (4.7)")
    payload = reader.binary()
    qos = (flags & WILL_QOS) >> WILL_QOS_SHIFT
    return Will(topic, payload, qos, bool(flags & WILL_RETAIN), properties)


def _decode_connack(reader: Reader, level: int) -> ConnAck:
    flags = reader.byte()
    if flags & ~SESSION_PRESENT:
        raise malformed("CONNACK with reserved flags set (MQTT-3.2.2-1)")
    if level == MQTT_5:
        reason = _reason(reader, CONNACK_REASONS, "CONNACK")
        properties = read_properties(reader, PacketType.CONNACK)
    else:
        code = reader.byte()
        if code not in CONNACK_FROM_311:
            raise malformed(f"3.1.1 CONNACK return code {code} (3.1.1 3.2.2.3)")
        reason, properties = CONNACK_FROM_311[code], {}
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
    qos = options & MAX_QOS
    if level != MQTT_5:
        if options & OPTIONS_RESERVED_311 or qos == INVALID_QOS:
            raise malformed(f"3.1.1 SUBSCRIBE options 0x{options:02X} (3.1.1 MQTT-3.8.3-4)")
        return Subscription(topic_filter, qos)
    if options & OPTIONS_RESERVED_5:
        raise malformed(f"SUBSCRIBE options 0x{options:02X} with reserved bits set (MQTT-3.8.3-5)")
    retain_handling = (options & RETAIN_HANDLING) >> RETAIN_HANDLING_SHIFT
    if qos == INVALID_QOS or retain_handling == 3:
        raise protocol_error(f"SUBSCRIBE options 0x{options:02X}: QoS 3 or Retain Handling 3 (3.8.3.1)")
    no_local = bool(options & NO_LOCAL)
    if no_local and topic_filter.startswith(SHARED_PREFIX):
        raise protocol_error("No Local on a Shared Subscription (MQTT-3.8.3-4)")
    return Subscription(topic_filter, qos, no_local, bool(options & RETAIN_AS_PUBLISHED), retain_handling)


def _decode_suback(reader: Reader, level: int) -> SubAck:
    packet_id = _packet_id(reader)
    if level == MQTT_5:
        properties, reasons = read_properties(reader, PacketType.SUBACK), SUBACK_REASONS
    else:
        properties, reasons = {}, SUBACK_REASONS_311
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
    return UnsubAck(packet_id, _reason_list(reader, UNSUBACK_REASONS, "UNSUBACK"), properties)


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
    reason = _reason(reader, DISCONNECT_REASONS, "DISCONNECT")
    properties = {} if reader.at_end() else read_properties(reader, PacketType.DISCONNECT)
    reader.expect_end("DISCONNECT")
    return Disconnect(reason, properties)


def _decode_auth(reader: Reader, _level: int) -> Auth:
    # 3.15.2.1: Remaining Length 0 means Success, no properties; otherwise both are there.
    if reader.at_end():
        return Auth()
    reason = _reason(reader, AUTH_REASONS, "AUTH")
    properties = read_properties(reader, PacketType.AUTH)
    reader.expect_end("AUTH")
    return Auth(reason, properties)


_Decode = Callable[[Reader, int], Any]
_DECODERS: tuple[_Decode | None, ...] = (
    None,  # 0 is reserved
    _decode_connect,
    _decode_connack,
    None,  # PUBLISH has its own path
    _ack_decoder(PubAck, PacketType.PUBACK, PUBACK_REASONS),
    _ack_decoder(PubRec, PacketType.PUBREC, PUBACK_REASONS),
    _ack_decoder(PubRel, PacketType.PUBREL, PUBREL_REASONS),
    _ack_decoder(PubComp, PacketType.PUBCOMP, PUBREL_REASONS),
    _decode_subscribe,
    _decode_suback,
    _decode_unsubscribe,
    _decode_unsuback,
    _empty_decoder(PingReq),
    _empty_decoder(PingResp),
    _decode_disconnect,
    _decode_auth,
)
