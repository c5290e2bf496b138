"""The MQTT codec against bytes written out by hand from the MQTT 3.1.1 and 5.0 specifications.

Section numbers are MQTT 5's unless they say 3.1.1. Every strict check is
here with the reason code it raises; test_mqtt_codec_properties.py covers the
rest of the input space.
"""

from __future__ import annotations

import pytest

from fleetgate.protocols.mqtt.codec import (
    MAX_PACKET_SIZE,
    PINGRESP,
    Decoder,
    ProtocolError,
    decode,
    encode,
    encode_puback,
    encode_pubcomp,
    encode_pubrec,
    encode_pubrel,
)
from fleetgate.protocols.mqtt.datatypes import read_varint, varint
from fleetgate.protocols.mqtt.packets import (
    MQTT_5,
    MQTT_311,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
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

P = Property
R = Reason


def h(text: str) -> bytes:
    """Bytes from spaced hex, the way the specification's tables write them."""
    return bytes.fromhex(text)


def frame(first: int, body: str) -> bytes:
    """A packet with the Remaining Length computed, for the malformed bodies below."""
    data = h(body)
    return bytes((first,)) + varint(len(data)) + data


MQTT_NAME = "00 04 4D 51 54 54"  # "MQTT" as a UTF-8 string: length 4, M Q T T (3.1.2.1)

# (protocol level, packet, its bytes): encode gives the bytes, decode gives the packet back.
EXAMPLES = [
    pytest.param(MQTT_311, Connect(MQTT_311, "abc", keep_alive=60), h(
        "10 0F"  # CONNECT, Remaining Length 15
        f"{MQTT_NAME} 04"  # protocol name, level 4 (3.1.1)
        "02"  # Connect Flags: Clean Session
        "00 3C"  # Keep Alive 60 s
        "00 03 61 62 63"  # Client Identifier "abc"
    ), id="connect-311"),
    pytest.param(MQTT_311, Connect(
        MQTT_311, "c1", clean_start=True, keep_alive=10, username="u", password=b"pw",
        will=Will("w/t", b"bye", qos=1, retain=True),
    ), h(
        "10 1F"
        f"{MQTT_NAME} 04"
        "EE"  # User Name 0x80, Password 0x40, Will Retain 0x20, Will QoS 1 (0x08), Will 0x04, Clean 0x02
        "00 0A"
        "00 02 63 31"  # Client Identifier "c1"
        "00 03 77 2F 74"  # Will Topic "w/t"
        "00 03 62 79 65"  # Will Payload "bye"
        "00 01 75"  # User Name "u"
        "00 02 70 77"  # Password "pw"
    ), id="connect-311-will-credentials"),
    pytest.param(MQTT_5, Connect(
        MQTT_5, "", keep_alive=30,
        properties={P.SESSION_EXPIRY_INTERVAL: 60, P.RECEIVE_MAXIMUM: 20, P.USER_PROPERTY: (("a", "b"),)},
    ), h(
        "10 1C"
        f"{MQTT_NAME} 05"
        "02 00 1E"
        "0F"  # Property Length 15
        "11 00 00 00 3C"  # Session Expiry Interval 60
        "21 00 14"  # Receive Maximum 20
        "26 00 01 61 00 01 62"  # User Property a=b
        "00 00"  # an empty Client Identifier
    ), id="connect-5-properties"),
    pytest.param(MQTT_5, Connect(
        MQTT_5, "x", password=b"\x01",
        will=Will("w", b"", properties={P.WILL_DELAY_INTERVAL: 5, P.CONTENT_TYPE: "t/p"}),
    ), h(
        "10 22"
        f"{MQTT_NAME} 05"
        "46"  # Password 0x40 without a User Name (allowed on MQTT 5, 3.1.2.9), Will 0x04, Clean 0x02
        "00 00"
        "00"  # no properties
        "00 01 78"
        "0B 18 00 00 00 05 03 00 03 74 2F 70"  # Will Properties: Will Delay Interval 5, Content Type "t/p"
        "00 01 77"  # Will Topic "w"
        "00 00"  # an empty Will Payload
        "00 01 01"  # Password 0x01
    ), id="connect-5-will-properties-password-only"),
    pytest.param(MQTT_311, ConnAck(), h("20 02 00 00"), id="connack-311"),
    pytest.param(MQTT_311, ConnAck(session_present=True), h("20 02 01 00"), id="connack-311-session-present"),
    pytest.param(MQTT_311, ConnAck(reason_code=R.NOT_AUTHORIZED), h("20 02 00 05"), id="connack-311-refused"),
    pytest.param(MQTT_311, ConnAck(reason_code=R.UNSUPPORTED_PROTOCOL_VERSION), h("20 02 00 01"),
                 id="connack-311-unacceptable-protocol-version"),
    pytest.param(MQTT_311, ConnAck(reason_code=R.CLIENT_IDENTIFIER_NOT_VALID), h("20 02 00 02"),
                 id="connack-311-identifier-rejected"),
    pytest.param(MQTT_311, ConnAck(reason_code=R.SERVER_UNAVAILABLE), h("20 02 00 03"),
                 id="connack-311-server-unavailable"),
    pytest.param(MQTT_5, ConnAck(), h("20 03 00 00 00"), id="connack-5"),
    pytest.param(MQTT_5, ConnAck(True, properties={P.TOPIC_ALIAS_MAXIMUM: 10, P.ASSIGNED_CLIENT_IDENTIFIER: "id"}), h(
        "20 0B 01 00"
        "08 22 00 0A 12 00 02 69 64"  # Topic Alias Maximum 10, Assigned Client Identifier "id"
    ), id="connack-5-properties"),
    pytest.param(MQTT_5, ConnAck(reason_code=R.NOT_AUTHORIZED), h("20 03 00 87 00"), id="connack-5-refused"),
    pytest.param(MQTT_311, Publish("a/b", b"hi"), h(
        "30 07"  # PUBLISH, QoS 0
        "00 03 61 2F 62"  # Topic Name "a/b"
        "68 69"  # payload "hi"
    ), id="publish-311-qos0"),
    pytest.param(MQTT_311, Publish("a/b", b"{}", qos=1, retain=True, dup=True, packet_id=10), h(
        "3B 09"  # PUBLISH, DUP 0x08, QoS 1 (0x02), RETAIN 0x01
        "00 03 61 2F 62 00 0A 7B 7D"  # Topic Name, Packet Identifier 10, payload "{}"
    ), id="publish-311-qos1-retain-dup"),
    pytest.param(MQTT_311, Publish("t", b"", qos=2, packet_id=0xFFFF), h("34 05 00 01 74 FF FF"),
                 id="publish-311-qos2-empty-payload"),
    pytest.param(MQTT_311, Publish("a/b", b"\xaa" * 200), h("30 CD 01 00 03 61 2F 62" + " AA" * 200),
                 id="publish-311-two-byte-remaining-length"),  # 205 = 0xCD 0x01 (2.1.4)
    pytest.param(MQTT_5, Publish("a/b", b"{}", qos=1, packet_id=10), h(
        "32 0A 00 03 61 2F 62 00 0A"
        "00"  # no properties
        "7B 7D"
    ), id="publish-5-qos1"),
    pytest.param(MQTT_5, Publish("", b"x", properties={P.TOPIC_ALIAS: 3, P.PAYLOAD_FORMAT_INDICATOR: 1}), h(
        "30 09"
        "00 00"  # an empty Topic Name, allowed with a Topic Alias (3.3.2.3.4)
        "05 23 00 03 01 01"  # Topic Alias 3, Payload Format Indicator 1
        "78"
    ), id="publish-5-topic-alias"),
    pytest.param(MQTT_5, Publish("t", b"", properties={
        P.SUBSCRIPTION_IDENTIFIER: (1, 128), P.CORRELATION_DATA: b"\x01\x02", P.USER_PROPERTY: (("k", "v"),),
    }), h(
        "30 15 00 01 74"
        "11"
        "0B 01 0B 80 01"  # Subscription Identifiers 1 and 128, which may repeat in a PUBLISH (3.3.2.3.8)
        "09 00 02 01 02"  # Correlation Data
        "26 00 01 6B 00 01 76"  # User Property k=v
    ), id="publish-5-repeated-subscription-identifiers"),
    pytest.param(MQTT_311, PubAck(10), h("40 02 00 0A"), id="puback-311"),
    pytest.param(MQTT_5, PubAck(10), h("40 02 00 0A"), id="puback-5-short"),  # 3.4.2.1
    pytest.param(MQTT_5, PubAck(10, R.NO_MATCHING_SUBSCRIBERS), h("40 03 00 0A 10"), id="puback-5-reason"),
    pytest.param(MQTT_5, PubAck(10, R.UNSPECIFIED_ERROR, {P.REASON_STRING: "bad"}), h(
        "40 0A 00 0A 80 06 1F 00 03 62 61 64"  # reason 0x80, Reason String "bad"
    ), id="puback-5-properties"),
    pytest.param(MQTT_311, PubRec(1), h("50 02 00 01"), id="pubrec-311"),
    pytest.param(MQTT_5, PubRec(1, R.QUOTA_EXCEEDED), h("50 03 00 01 97"), id="pubrec-5"),
    pytest.param(MQTT_311, PubRel(1), h("62 02 00 01"), id="pubrel-311"),  # flags 0b0010 (3.6.1)
    pytest.param(MQTT_5, PubRel(1, R.PACKET_IDENTIFIER_NOT_FOUND), h("62 03 00 01 92"), id="pubrel-5"),
    pytest.param(MQTT_311, PubComp(1), h("70 02 00 01"), id="pubcomp-311"),
    pytest.param(MQTT_5, PubComp(1, properties={P.USER_PROPERTY: (("a", ""),)}), h(
        "70 0A 00 01 00 06 26 00 01 61 00 00"
    ), id="pubcomp-5-properties"),
    pytest.param(MQTT_311, Subscribe(1, (Subscription("a/#", 1), Subscription("b", 0))), h(
        "82 0C 00 01"  # SUBSCRIBE, flags 0b0010 (3.8.1), Packet Identifier 1
        "00 03 61 2F 23 01"  # "a/#" QoS 1
        "00 01 62 00"  # "b" QoS 0
    ), id="subscribe-311"),
    pytest.param(MQTT_5, Subscribe(2, (Subscription("t/+", 1, True, True, 2),), {P.SUBSCRIPTION_IDENTIFIER: 5}), h(
        "82 0B 00 02"
        "02 0B 05"  # Subscription Identifier 5
        "00 03 74 2F 2B"
        "2D"  # Retain Handling 2 (0x20), Retain As Published 0x08, No Local 0x04, QoS 1
    ), id="subscribe-5-options"),
    pytest.param(MQTT_311, SubAck(1, (1, 0x80)), h("90 04 00 01 01 80"), id="suback-311"),
    pytest.param(MQTT_5, SubAck(2, (1, R.NOT_AUTHORIZED)), h("90 05 00 02 00 01 87"), id="suback-5"),
    pytest.param(MQTT_311, Unsubscribe(3, ("a",)), h("A2 05 00 03 00 01 61"), id="unsubscribe-311"),
    pytest.param(MQTT_5, Unsubscribe(3, ("a",)), h("A2 06 00 03 00 00 01 61"), id="unsubscribe-5"),
    pytest.param(MQTT_311, UnsubAck(3), h("B0 02 00 03"), id="unsuback-311"),
    pytest.param(MQTT_5, UnsubAck(3, (R.SUCCESS, R.NO_SUBSCRIPTION_EXISTED)), h("B0 05 00 03 00 00 11"),
                 id="unsuback-5"),
    pytest.param(MQTT_311, PingReq(), h("C0 00"), id="pingreq-311"),
    pytest.param(MQTT_5, PingReq(), h("C0 00"), id="pingreq-5"),
    pytest.param(MQTT_311, PingResp(), h("D0 00"), id="pingresp-311"),
    pytest.param(MQTT_5, PingResp(), h("D0 00"), id="pingresp-5"),
    pytest.param(MQTT_311, Disconnect(), h("E0 00"), id="disconnect-311"),
    pytest.param(MQTT_5, Disconnect(), h("E0 00"), id="disconnect-5-short"),  # 3.14.2.1
    pytest.param(MQTT_5, Disconnect(R.SESSION_TAKEN_OVER), h("E0 01 8E"), id="disconnect-5-reason"),
    pytest.param(MQTT_5, Disconnect(R.SERVER_SHUTTING_DOWN, {P.REASON_STRING: "bye"}), h(
        "E0 08 8B 06 1F 00 03 62 79 65"
    ), id="disconnect-5-properties"),
    pytest.param(MQTT_5, Auth(), h("F0 00"), id="auth-5-short"),  # 3.15.2.1
    pytest.param(MQTT_5, Auth(R.CONTINUE_AUTHENTICATION, {
        P.AUTHENTICATION_METHOD: "SCRAM", P.AUTHENTICATION_DATA: b"\x01\x02",
    }), h(
        "F0 0F 18 0D"
        "15 00 05 53 43 52 41 4D"  # Authentication Method "SCRAM"
        "16 00 02 01 02"  # Authentication Data
    ), id="auth-5"),
]


@pytest.mark.parametrize(("level", "packet", "data"), EXAMPLES)
def test_encode_gives_the_bytes_of_the_specification(level: int, packet: Packet, data: bytes) -> None:
    assert encode(packet, level) == data


@pytest.mark.parametrize(("level", "packet", "data"), EXAMPLES)
def test_decode_gives_the_packet_back(level: int, packet: Packet, data: bytes) -> None:
    decoder = Decoder(protocol_level=None if isinstance(packet, Connect) else level)
    assert decoder.feed(data) == [packet]
    assert decoder.protocol_level == level
    assert decoder.buffered == 0


@pytest.mark.parametrize(("level", "packet", "data"), EXAMPLES)
def test_byte_by_byte_gives_the_same_packet(level: int, packet: Packet, data: bytes) -> None:
    decoder = Decoder(protocol_level=None if isinstance(packet, Connect) else level)
    packets = [p for byte in data for p in decoder.feed(bytes((byte,)))]
    assert packets == [packet]


@pytest.mark.parametrize(("level", "packet", "data"), [
    pytest.param(MQTT_5, PubAck(10), h("40 04 00 0A 00 00"), id="puback-5-long-form-success"),
    pytest.param(MQTT_5, PubAck(10, R.NOT_AUTHORIZED), h("40 04 00 0A 87 00"), id="puback-5-empty-properties"),
    pytest.param(MQTT_5, Disconnect(), h("E0 02 00 00"), id="disconnect-5-long-form"),
    pytest.param(MQTT_5, Publish("a", b"", properties={P.USER_PROPERTY: (("k", "1"), ("k", "2"))}), h(
        "30 12 00 01 61 0E 26 00 01 6B 00 01 31 26 00 01 6B 00 01 32"
    ), id="publish-5-user-property-repeated"),
    pytest.param(MQTT_311, Publish("$SYS/ü", b""), h("30 09 00 07 24 53 59 53 2F C3 BC"), id="publish-utf8"),
    pytest.param(MQTT_311, Publish("\ufeffa", b""), h("30 06 00 04 EF BB BF 61"), id="publish-bom-kept"),
    pytest.param(MQTT_311, ConnAck(reason_code=R.BAD_USER_NAME_OR_PASSWORD), h("20 02 00 04"),
                 id="connack-311-bad-user-name-or-password"),
])
def test_decode_only_forms(level: int, packet: Packet, data: bytes) -> None:
    """Forms encode() writes otherwise: longer forms a sender may choose (3.4.2.1, 3.14.2.1), a BOM
    (kept, MQTT-1.5.4-3), and return code 4, which encode() never sends (see the CONNACK test below)."""
    assert decode(data, level) == [packet]


@pytest.mark.parametrize(("value", "data"), [
    (0, "00"), (127, "7F"), (128, "80 01"), (16_383, "FF 7F"), (16_384, "80 80 01"),
    (2_097_151, "FF FF 7F"), (2_097_152, "80 80 80 01"), (268_435_455, "FF FF FF 7F"),
])
def test_variable_byte_integers_of_table_1_5_5(value: int, data: str) -> None:
    assert varint(value) == h(data)
    assert read_varint(h(data), 0, len(h(data))) == (value, len(h(data)))


def test_a_four_byte_remaining_length_is_read() -> None:
    """2_097_152 bytes of PUBLISH: the Remaining Length 80 80 80 01 (2.1.4)."""
    payload = bytes(2_097_152 - 5)
    data = h("30 80 80 80 01 00 03 61 2F 62") + payload
    assert decode(data, MQTT_311) == [Publish("a/b", payload)]


# Strict checks: (protocol level, bytes, reason).
M = R.MALFORMED_PACKET
E = R.PROTOCOL_ERROR

VIOLATIONS = [
    # Fixed header (2.1).
    pytest.param(MQTT_311, h("30 FF FF FF FF 01"), M, id="remaining-length-of-five-bytes"),
    pytest.param(MQTT_311, h("30 FF FF FF FF"), M, id="remaining-length-fifth-byte-announced"),
    pytest.param(MQTT_311, h("C0 80 00"), M, id="remaining-length-not-shortest-MQTT-1.5.5-1"),
    pytest.param(MQTT_311, h("00 00"), M, id="packet-type-0-reserved"),
    pytest.param(MQTT_311, h("F0 00"), M, id="auth-on-311-reserved"),
    pytest.param(None, h("F0 00"), M, id="auth-before-connect"),
    pytest.param(MQTT_311, h("60 02 00 01"), M, id="pubrel-flags-0-MQTT-3.6.1-1"),
    pytest.param(MQTT_311, h("80 06 00 01 00 01 61 00"), M, id="subscribe-flags-0-MQTT-3.8.1-1"),
    pytest.param(MQTT_311, h("A0 05 00 01 00 01 61"), M, id="unsubscribe-flags-0-MQTT-3.10.1-1"),
    pytest.param(MQTT_311, h("42 02 00 01"), M, id="puback-flags-2"),
    pytest.param(MQTT_311, h("21 02 00 00"), M, id="connack-flags-1"),
    pytest.param(MQTT_311, h("C8 00"), M, id="pingreq-flags-8"),
    pytest.param(MQTT_5, h("E1 00"), M, id="disconnect-flags-1"),
    # PUBLISH (3.3).
    pytest.param(MQTT_311, h("36 05 00 01 61 00 01"), M, id="publish-qos-3-MQTT-3.3.1-4"),
    pytest.param(MQTT_5, h("3E 06 00 01 61 00 01 00"), M, id="publish-qos-3-dup-5"),
    pytest.param(MQTT_311, h("38 03 00 01 61"), E, id="publish-qos0-dup-MQTT-3.3.1-2"),
    pytest.param(MQTT_5, h("38 04 00 01 61 00"), E, id="publish-qos0-dup-5"),
    pytest.param(MQTT_311, h("30 03 00 01 2B"), R.TOPIC_NAME_INVALID, id="publish-topic-plus-MQTT-3.3.2-2"),
    pytest.param(MQTT_311, h("30 05 00 03 61 2F 23"), R.TOPIC_NAME_INVALID, id="publish-topic-hash"),
    pytest.param(MQTT_5, h("30 08 00 05 61 2F 2B 2F 62 00"), R.TOPIC_NAME_INVALID, id="publish-5-topic-plus"),
    pytest.param(MQTT_311, h("30 02 00 00"), E, id="publish-311-empty-topic-MQTT-4.7.3-1"),
    pytest.param(MQTT_5, h("30 03 00 00 00"), E, id="publish-5-empty-topic-no-alias"),
    pytest.param(MQTT_5, h("30 06 00 00 03 23 00 00"), R.TOPIC_ALIAS_INVALID, id="publish-topic-alias-0-MQTT-3.3.2-8"),
    pytest.param(MQTT_311, h("32 05 00 01 61 00 00"), E, id="publish-packet-id-0"),
    pytest.param(MQTT_311, h("32 03 00 01 61"), M, id="publish-packet-id-cut"),
    pytest.param(MQTT_311, h("30 03 00 05 61"), M, id="publish-topic-past-end"),
    pytest.param(MQTT_311, h("30 01 00"), M, id="publish-topic-length-cut"),
    pytest.param(MQTT_5, h("30 03 00 01 61"), M, id="publish-5-property-length-missing"),
    pytest.param(MQTT_5, h("30 05 00 01 61 05 01"), M, id="publish-5-property-length-past-end"),
    pytest.param(MQTT_5, h("30 06 00 01 61 80 80 80"), M, id="publish-5-property-length-varint-cut"),
    pytest.param(MQTT_5, h("30 09 00 01 61 80 80 80 80 01 00"), M, id="publish-5-property-length-five-bytes"),
    pytest.param(MQTT_5, h("30 09 00 01 61 0B 80 80 80 80 01"), M, id="publish-5-subscription-id-five-bytes"),
    # UTF-8 strings (1.5.4), in the Topic Name and elsewhere.
    pytest.param(MQTT_311, h("30 04 00 02 C3 28"), M, id="utf8-ill-formed-MQTT-1.5.4-1"),
    pytest.param(MQTT_311, h("30 05 00 03 ED A0 80"), M, id="utf8-surrogate-MQTT-1.5.4-1"),
    pytest.param(MQTT_311, h("30 04 00 02 C0 AF"), M, id="utf8-overlong"),
    pytest.param(MQTT_311, h("30 06 00 04 F4 90 80 80"), M, id="utf8-above-U+10FFFF"),
    pytest.param(MQTT_311, h("30 04 00 02 61 00"), M, id="utf8-nul-MQTT-1.5.4-2"),
    pytest.param(MQTT_311, h("A2 05 00 01 00 01 00"), M, id="utf8-nul-in-topic-filter"),
    pytest.param(MQTT_311, h("82 07 00 01 00 02 ED B0 00"), M, id="utf8-surrogate-in-topic-filter"),
    pytest.param(MQTT_5, h("30 0C 00 01 61 08 26 00 02 ED A0 00 00 00"), M, id="utf8-surrogate-in-user-property"),
    # Packet Identifiers (2.2.1).
    pytest.param(MQTT_311, h("40 02 00 00"), E, id="puback-packet-id-0-MQTT-2.2.1-3"),
    pytest.param(MQTT_311, h("82 06 00 00 00 01 61 00"), E, id="subscribe-packet-id-0"),
    pytest.param(MQTT_311, h("A2 05 00 00 00 01 61"), E, id="unsubscribe-packet-id-0"),
    pytest.param(MQTT_311, h("90 03 00 00 00"), E, id="suback-packet-id-0"),
    pytest.param(MQTT_311, h("40 01 00"), M, id="puback-packet-id-cut"),
    # SUBSCRIBE, UNSUBSCRIBE and their acknowledgements (3.8-3.11).
    pytest.param(MQTT_311, h("82 02 00 01"), E, id="subscribe-311-no-filter-MQTT-3.8.3-2"),
    pytest.param(MQTT_5, h("82 03 00 01 00"), E, id="subscribe-5-no-filter"),
    pytest.param(MQTT_311, h("A2 02 00 01"), E, id="unsubscribe-no-filter-MQTT-3.10.3-2"),
    pytest.param(MQTT_311, h("82 05 00 01 00 01 61"), M, id="subscribe-options-missing"),
    pytest.param(MQTT_311, h("82 06 00 01 00 01 61 04"), M, id="subscribe-311-options-reserved-bits"),
    pytest.param(MQTT_311, h("82 06 00 01 00 01 61 03"), M, id="subscribe-311-qos-3"),
    pytest.param(MQTT_5, h("82 07 00 01 00 00 01 61 40"), M, id="subscribe-5-options-reserved-MQTT-3.8.3-5"),
    pytest.param(MQTT_5, h("82 07 00 01 00 00 01 61 03"), E, id="subscribe-5-qos-3"),
    pytest.param(MQTT_5, h("82 07 00 01 00 00 01 61 30"), E, id="subscribe-5-retain-handling-3"),
    pytest.param(MQTT_5, h("82 0F 00 01 00 00 09 24 73 68 61 72 65 2F 67 2F 04"), E,
                 id="subscribe-5-no-local-shared-MQTT-3.8.3-4"),
    pytest.param(MQTT_311, h("90 02 00 01"), E, id="suback-no-reason-code"),
    pytest.param(MQTT_311, h("90 03 00 01 87"), M, id="suback-311-unknown-return-code"),
    pytest.param(MQTT_5, h("90 04 00 01 00 03"), M, id="suback-5-unknown-reason-code"),
    pytest.param(MQTT_311, h("B0 03 00 01 00"), M, id="unsuback-311-trailing-byte"),
    pytest.param(MQTT_5, h("B0 03 00 01 00"), E, id="unsuback-5-no-reason-code"),
    # Acknowledgements, PINGs, DISCONNECT, AUTH.
    pytest.param(MQTT_311, h("40 03 00 01 00"), M, id="puback-311-trailing-byte"),
    pytest.param(MQTT_5, h("40 03 00 01 92"), M, id="puback-5-reason-of-pubrel"),
    pytest.param(MQTT_5, h("62 03 00 01 10"), M, id="pubrel-5-reason-of-puback"),
    pytest.param(MQTT_5, h("40 05 00 01 00 00 00"), M, id="puback-5-trailing-byte"),
    pytest.param(MQTT_311, h("C0 01 00"), M, id="pingreq-with-body"),
    pytest.param(MQTT_311, h("D0 01 00"), M, id="pingresp-with-body"),
    pytest.param(MQTT_311, h("E0 01 00"), M, id="disconnect-311-with-body"),
    pytest.param(MQTT_5, h("E0 01 05"), M, id="disconnect-5-unknown-reason"),
    pytest.param(MQTT_5, h("F0 01 18"), M, id="auth-without-property-length"),
    pytest.param(MQTT_5, h("F0 02 87 00"), M, id="auth-unknown-reason"),
    # CONNACK (3.2).
    pytest.param(MQTT_311, h("20 02 02 00"), M, id="connack-reserved-flags-MQTT-3.2.2-1"),
    pytest.param(MQTT_311, h("20 02 00 06"), M, id="connack-311-return-code-6"),
    pytest.param(MQTT_311, h("20 02 01 05"), E, id="connack-311-session-present-refused"),
    pytest.param(MQTT_5, h("20 03 01 87 00"), E, id="connack-5-session-present-refused-MQTT-3.2.2-6"),
    pytest.param(MQTT_5, h("20 03 00 10 00"), M, id="connack-5-reason-of-puback"),
    pytest.param(MQTT_311, h("20 03 00 00 00"), M, id="connack-311-trailing-byte"),
    pytest.param(MQTT_5, h("20 02 00 00"), M, id="connack-5-no-property-length"),
    # MQTT 5 properties (2.2.2).
    pytest.param(MQTT_5, h("20 05 00 00 02 7F 00"), M, id="property-unknown"),
    pytest.param(MQTT_5, h("20 05 00 00 02 80 01"), M, id="property-identifier-two-bytes"),
    pytest.param(MQTT_5, h("20 06 00 00 03 23 00 01"), M, id="property-not-allowed-topic-alias-in-connack"),
    pytest.param(MQTT_5, h("40 06 00 01 00 02 01 01"), M, id="property-not-allowed-in-puback"),
    pytest.param(MQTT_5, h("20 0D 00 00 0A 11 00 00 00 01 11 00 00 00 02"), E, id="property-twice"),
    pytest.param(MQTT_5, h("82 0B 00 01 04 0B 01 0B 02 00 01 61 00"), E,
                 id="subscription-identifier-twice-in-subscribe"),
    pytest.param(MQTT_5, h("30 06 00 01 61 02 0B 00"), E, id="subscription-identifier-0"),
    pytest.param(MQTT_5, h("82 09 00 01 02 0B 00 00 01 61 00"), E, id="subscription-identifier-0-in-subscribe"),
    pytest.param(MQTT_5, h("20 06 00 00 03 21 00 00"), E, id="receive-maximum-0"),
    pytest.param(MQTT_5, h("20 08 00 00 05 27 00 00 00 00"), E, id="maximum-packet-size-0"),
    pytest.param(MQTT_5, h("20 05 00 00 02 24 02"), E, id="maximum-qos-2"),
    pytest.param(MQTT_5, h("30 06 00 01 61 02 01 02"), E, id="payload-format-indicator-2"),
    pytest.param(MQTT_5, h("30 08 00 01 61 04 08 00 01 23"), E, id="response-topic-wildcard-MQTT-3.3.2-14"),
    pytest.param(MQTT_5, h("F0 07 18 05 16 00 02 01 02"), E, id="authentication-data-without-method"),
    pytest.param(MQTT_5, h("30 06 00 01 61 03 21 00"), M, id="property-value-past-property-length"),
    pytest.param(MQTT_5, h("30 07 00 01 61 02 21 00 01"), M, id="property-value-past-its-block"),
]


@pytest.mark.parametrize(("level", "data", "reason"), VIOLATIONS)
def test_violation_raises_protocol_error_with_its_reason(level: int | None, data: bytes, reason: Reason) -> None:
    with pytest.raises(ProtocolError) as raised:
        Decoder(protocol_level=level).feed(data)
    assert raised.value.reason_code == reason, raised.value


def connect(level: int, flags: int, payload: str, name: str = MQTT_NAME) -> bytes:
    """A CONNECT with Keep Alive 0 (and no properties on MQTT 5) before ``payload``."""
    properties = " 00" if level == MQTT_5 else ""
    return frame(0x10, f"{name} {level:02X} {flags:02X} 00 00{properties} {payload}")


CLIENT_X = "00 01 78"

CONNECT_VIOLATIONS = [
    pytest.param(frame(0x10, f"00 06 4D 51 49 73 64 70 03 02 00 00 {CLIENT_X}"), R.UNSUPPORTED_PROTOCOL_VERSION,
                 id="mqtt-3.1-MQIsdp"),
    pytest.param(frame(0x10, f"{MQTT_NAME} 03 02 00 00 {CLIENT_X}"), R.UNSUPPORTED_PROTOCOL_VERSION,
                 id="level-3-MQTT-3.1.2-2"),
    pytest.param(frame(0x10, f"{MQTT_NAME} 06 02 00 00 00 {CLIENT_X}"), R.UNSUPPORTED_PROTOCOL_VERSION, id="level-6"),
    pytest.param(frame(0x10, f"00 04 4D 51 54 74 04 02 00 00 {CLIENT_X}"), R.UNSUPPORTED_PROTOCOL_VERSION,
                 id="name-MQTt-MQTT-3.1.2-1"),
    pytest.param(frame(0x10, "00 04 4D 51"), M, id="name-cut"),
    pytest.param(connect(MQTT_311, 0x03, CLIENT_X), M, id="reserved-flag-MQTT-3.1.2-3"),
    pytest.param(connect(MQTT_5, 0x03, CLIENT_X), M, id="reserved-flag-5"),
    pytest.param(connect(MQTT_311, 0x0A, CLIENT_X), M, id="will-qos-without-will-MQTT-3.1.2-11"),
    pytest.param(connect(MQTT_5, 0x22, CLIENT_X), M, id="will-retain-without-will-MQTT-3.1.2-13"),
    pytest.param(connect(MQTT_311, 0x1E, f"{CLIENT_X} 00 01 77 00 00"), M, id="will-qos-3-MQTT-3.1.2-12"),
    pytest.param(connect(MQTT_311, 0x42, f"{CLIENT_X} 00 01 70"), M, id="311-password-without-username"),
    pytest.param(connect(MQTT_311, 0x06, f"{CLIENT_X} 00 01 23 00 00"), R.TOPIC_NAME_INVALID, id="will-topic-wildcard"),
    pytest.param(connect(MQTT_311, 0x06, f"{CLIENT_X} 00 00 00 00"), R.TOPIC_NAME_INVALID, id="will-topic-empty"),
    pytest.param(connect(MQTT_311, 0x82, CLIENT_X), M, id="username-flag-without-username"),
    pytest.param(connect(MQTT_311, 0x02, f"{CLIENT_X} 00"), M, id="trailing-byte"),
    pytest.param(connect(MQTT_311, 0x02, "00 01 00"), M, id="client-id-nul"),
    pytest.param(connect(MQTT_5, 0x06, f"{CLIENT_X} 02 23 00 00 01 77 00 00"), M, id="will-property-not-allowed"),
    pytest.param(frame(0x10, f"{MQTT_NAME} 05 02 00 00 03 17 00 01 {CLIENT_X}"), M,
                 id="connect-property-not-allowed-pfi"),
    pytest.param(frame(0x10, f"{MQTT_NAME} 05 02 00 00 04 17 00 17 00 {CLIENT_X}"), E, id="connect-property-twice"),
    pytest.param(frame(0x10, f"{MQTT_NAME} 05 02 00 00 02 17 02 {CLIENT_X}"), E,
                 id="request-problem-information-2"),
]


@pytest.mark.parametrize(("data", "reason"), CONNECT_VIOLATIONS)
def test_connect_violation_raises_protocol_error_with_its_reason(data: bytes, reason: Reason) -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(data)
    assert raised.value.reason_code == reason, raised.value
    assert decoder.protocol_level is None


def test_packet_too_large_is_refused_from_its_fixed_header_alone() -> None:
    decoder = Decoder(max_packet_size=99)
    assert decoder.feed(h("30")) == []
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(h("62"))  # Remaining Length 98: 100 bytes in all, before any body arrives
    assert raised.value.reason_code == R.PACKET_TOO_LARGE


def test_a_packet_of_exactly_the_maximum_size_is_accepted() -> None:
    packet = Publish("a", bytes(95))  # 2 + 3 + 95
    assert Decoder(max_packet_size=100).feed(encode(packet, MQTT_311)) == [packet]
    assert MAX_PACKET_SIZE == 268_435_460


def test_after_an_error_every_feed_raises_it_again() -> None:
    decoder = Decoder(protocol_level=MQTT_311)
    with pytest.raises(ProtocolError):
        decoder.feed(h("00 00"))
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(h("C0 00"))
    assert raised.value.reason_code == R.MALFORMED_PACKET
    assert decoder.buffered == 0


def test_protocol_level_is_none_until_a_connect_then_decides_the_packets_after_it() -> None:
    decoder = Decoder()
    assert decoder.protocol_level is None
    assert decoder.feed(h("C0 00")) == [PingReq()]  # what the session refuses: decoded as 3.1.1
    assert decoder.protocol_level is None
    mqtt5_connect = encode(Connect(MQTT_5, "d"), MQTT_5)
    mqtt5_publish = h("30 09 00 01 61 03 23 00 07 7B 7D")  # Topic Alias 7, payload "{}"
    packets = decoder.feed(mqtt5_connect + mqtt5_publish)
    assert packets == [Connect(MQTT_5, "d"), Publish("a", b"{}", properties={P.TOPIC_ALIAS: 7})]
    assert decoder.protocol_level == MQTT_5
    # A second CONNECT (the session's to refuse) decodes by its own level and changes nothing.
    assert decoder.feed(encode(Connect(MQTT_311, "e"), MQTT_311)) == [Connect(MQTT_311, "e")]
    assert decoder.protocol_level == MQTT_5


def test_a_packet_split_across_feeds() -> None:
    data = encode(Publish("v1/devices/me/telemetry", b'{"t":1}' * 40, 1, packet_id=9), MQTT_311)
    decoder = Decoder(protocol_level=MQTT_311)
    assert decoder.feed(data[:1]) == []
    assert decoder.feed(data[1:3]) == []  # the Remaining Length is two bytes: now it is known
    assert decoder.feed(data[3:100]) == []
    assert decoder.buffered == 100
    assert decoder.feed(data[100:] + data[:10]) == [Publish("v1/devices/me/telemetry", b'{"t":1}' * 40, 1, packet_id=9)]
    assert decoder.buffered == 10


def test_many_packets_in_one_feed_and_in_every_chunking() -> None:
    packets: list[Packet] = [
        Publish(f"t/{i}", bytes([i]) * i, qos=i % 2, packet_id=i if i % 2 else None) for i in range(1, 200)
    ] + [PingReq(), PubAck(5), Subscribe(3, (Subscription("a/#"),)), Disconnect()]
    data = b"".join(encode(packet, MQTT_311) for packet in packets)
    assert decode(data, MQTT_311) == packets
    for size in (1, 2, 3, 7, 64, 1000):
        decoder = Decoder(protocol_level=MQTT_311)
        decoded = [p for start in range(0, len(data), size) for p in decoder.feed(data[start:start + size])]
        assert decoded == packets, size


def test_feed_takes_bytearray_and_memoryview() -> None:
    decoder = Decoder(protocol_level=MQTT_311)
    assert decoder.feed(bytearray(h("C0 00"))) == [PingReq()]
    assert decoder.feed(memoryview(h("D0 00 C0"))) == [PingResp()]
    assert decoder.feed(memoryview(h("00"))) == [PingReq()]


def test_decode_refuses_data_that_ends_inside_a_packet() -> None:
    with pytest.raises(ProtocolError) as raised:
        decode(h("C0 00 30 05 00"), MQTT_311)
    assert raised.value.reason_code == R.MALFORMED_PACKET


def test_decoded_publish_is_the_dataclass_the_constructor_builds() -> None:
    """The hot path builds Publish without its __init__: same type, fields, equality, hash-free frozenness."""
    decoded = decode(h("3B 09 00 03 61 2F 62 00 0A 7B 7D"), MQTT_311)[0]
    built = Publish("a/b", b"{}", qos=1, retain=True, dup=True, packet_id=10)
    assert type(decoded) is Publish
    assert decoded == built and repr(decoded) == repr(built)
    assert type(decoded.payload) is bytes and type(decoded.retain) is bool and type(decoded.dup) is bool
    with pytest.raises(AttributeError):
        decoded.qos = 0  # type: ignore[misc]


# 3.1.1 encodings of what only MQTT 5 can say.

@pytest.mark.parametrize(("reason", "return_code"), [
    (R.SUCCESS, 0), (R.UNSUPPORTED_PROTOCOL_VERSION, 1), (R.CLIENT_IDENTIFIER_NOT_VALID, 2),
    (R.SERVER_UNAVAILABLE, 3), (R.SERVER_BUSY, 3), (R.SERVER_SHUTTING_DOWN, 3), (R.UNSPECIFIED_ERROR, 3),
    (R.CONNECTION_RATE_EXCEEDED, 3), (R.USE_ANOTHER_SERVER, 3), (R.BAD_USER_NAME_OR_PASSWORD, 5),
    (R.NOT_AUTHORIZED, 5), (R.BANNED, 5), (R.BAD_AUTHENTICATION_METHOD, 5), (R.MALFORMED_PACKET, 5),
])
def test_connack_reasons_become_311_return_codes(reason: Reason, return_code: int) -> None:
    """As ThingsBoard answers 3.1.x clients: bad credentials are "not authorized" (5), never 4."""
    assert encode(ConnAck(reason_code=reason), MQTT_311) == bytes((0x20, 2, 0, return_code))


def test_311_drops_what_it_cannot_carry() -> None:
    assert encode(SubAck(1, (0, 2, R.NOT_AUTHORIZED, R.QUOTA_EXCEEDED)), MQTT_311) == h("90 06 00 01 00 02 80 80")
    assert encode(UnsubAck(1, (R.NO_SUBSCRIPTION_EXISTED,)), MQTT_311) == h("B0 02 00 01")
    assert encode(PubAck(1, R.NOT_AUTHORIZED, {P.REASON_STRING: "no"}), MQTT_311) == h("40 02 00 01")
    assert encode(Disconnect(R.SERVER_SHUTTING_DOWN), MQTT_311) == h("E0 00")
    assert encode(Publish("a", b"", properties={P.MESSAGE_EXPIRY_INTERVAL: 5}), MQTT_311) == h("30 03 00 01 61")
    subscription = Subscription("a", 1, no_local=True, retain_as_published=True, retain_handling=1)
    assert encode(Subscribe(1, (subscription,)), MQTT_311) == h("82 06 00 01 00 01 61 01")


@pytest.mark.parametrize(("packet", "level"), [
    pytest.param(Auth(), MQTT_311, id="auth-on-311"),
    pytest.param(Publish("a", b"", qos=1), MQTT_311, id="qos1-without-packet-id"),
    pytest.param(Publish("a", b"", qos=3, packet_id=1), MQTT_311, id="qos-3"),
    pytest.param(Connect(MQTT_311, "c", password=b"p"), MQTT_311, id="311-password-without-username"),
    pytest.param(UnsubAck(1), MQTT_5, id="unsuback-5-without-reason-codes"),
    pytest.param(SubAck(1, ()), MQTT_311, id="suback-without-reason-codes"),
    pytest.param(Subscribe(1, ()), MQTT_311, id="subscribe-without-filters"),
    pytest.param(Unsubscribe(1, ()), MQTT_311, id="unsubscribe-without-filters"),
    pytest.param(Publish("a\x00", b""), MQTT_311, id="nul-in-topic"),
    pytest.param(Publish("\ud800", b""), MQTT_311, id="lone-surrogate"),
    pytest.param(Publish("a" * 65_536, b""), MQTT_311, id="topic-too-long"),
    pytest.param(PubAck(70_000), MQTT_311, id="packet-id-too-large"),
    pytest.param(Publish("a", b"", properties={0x7F: 1}), MQTT_5, id="unknown-property"),  # type: ignore[dict-item]
])
def test_encode_refuses_what_cannot_be_sent(packet: Packet, level: int) -> None:
    with pytest.raises(ValueError):
        encode(packet, level)


def test_encode_refuses_what_is_not_a_packet() -> None:
    with pytest.raises(TypeError):
        encode("PINGREQ", MQTT_311)  # type: ignore[arg-type]


@pytest.mark.parametrize("level", [MQTT_311, MQTT_5])
@pytest.mark.parametrize("reason", [R.SUCCESS, R.NOT_AUTHORIZED, R.PACKET_IDENTIFIER_NOT_FOUND])
def test_fast_acknowledgements_equal_encode(level: int, reason: Reason) -> None:
    for packet_id in (1, 0x1234, 0xFFFF):
        assert encode_puback(packet_id, reason, level) == encode(PubAck(packet_id, reason), level)
        assert encode_pubrec(packet_id, reason, level) == encode(PubRec(packet_id, reason), level)
        assert encode_pubrel(packet_id, reason, level) == encode(PubRel(packet_id, reason), level)
        assert encode_pubcomp(packet_id, reason, level) == encode(PubComp(packet_id, reason), level)
    assert PINGRESP == encode(PingResp(), level)
