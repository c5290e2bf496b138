"""The load generator's MQTT packets: encodings checked byte by byte, the reader fed in every split."""

from __future__ import annotations

import orjson
import pytest

from fleetgate.simulator.mqtt_packets import (
    MQTT_5,
    MQTT_311,
    MqttProtocolError,
    PublishTemplate,
    connack_error,
    encode_connect,
    encode_subscribe,
    read_properties,
    split_packets,
    varint,
)

TELEMETRY = b'{"temperature":21.5,"humidity":40,"active":true}'
TOPIC = "v1/devices/me/telemetry"


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_variable_byte_integer(value: int, encoded: bytes) -> None:
    assert varint(value) == encoded


def test_variable_byte_integer_range() -> None:
    with pytest.raises(ValueError):
        varint(268_435_456)


def test_connect_311_with_token_as_user_name() -> None:
    # MQTT 3.1.1 section 3.1: protocol name, level 4, flags (user name 0x80, clean session 0x02), keep-alive.
    assert encode_connect("dev-1", username="TOKEN", keepalive=60) == (
        b"\x10\x18" b"\x00\x04MQTT" b"\x04" b"\x82" b"\x00\x3c" b"\x00\x05dev-1" b"\x00\x05TOKEN"
    )


def test_connect_5_with_properties_and_password() -> None:
    packet = encode_connect("c", username="u", password="p", keepalive=30, version=MQTT_5, receive_maximum=100)
    assert packet == (
        b"\x10\x17" b"\x00\x04MQTT" b"\x05" b"\xc2" b"\x00\x1e" b"\x03\x21\x00\x64" b"\x00\x01c" b"\x00\x01u"
        b"\x00\x01p"
    )
    assert encode_connect("c", version=MQTT_5)[12:13] == b"\x00"  # empty properties


def test_connect_rejects_what_mqtt_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode_connect("c", version=3)
    with pytest.raises(ValueError):
        encode_connect("c", keepalive=70_000)


def test_subscribe() -> None:
    assert encode_subscribe(7, "a/#", 1) == b"\x82\x08\x00\x07\x00\x03a/#\x01"
    assert encode_subscribe(7, "a/#", 1, MQTT_5) == b"\x82\x09\x00\x07\x00\x00\x03a/#\x01"


def test_publish_qos1_311() -> None:
    template = PublishTemplate.build(TOPIC, TELEMETRY, qos=1)
    message = template.encode(0x1234)
    body = b"\x00\x17" + TOPIC.encode() + b"\x12\x34" + TELEMETRY
    assert message == b"\x32" + varint(len(body)) + body


def test_publish_qos0_and_mqtt5() -> None:
    assert PublishTemplate.build("t", b"x", qos=0).encode() == b"\x30\x04\x00\x01tx"
    assert PublishTemplate.build("t", b"x", qos=1, version=MQTT_5).encode(1) == b"\x32\x07\x00\x01t\x00\x01\x00x"
    assert PublishTemplate.build("t", b"x", qos=0, version=MQTT_5).encode() == b"\x30\x05\x00\x01t\x00x"


def test_publish_with_timestamp_keeps_its_length_and_is_json() -> None:
    template = PublishTemplate.build(TOPIC, TELEMETRY, qos=1, timestamp=True)
    message = template.encode(5, 1_795_000_000_123)
    packets, end = split_packets(message)
    assert end == len(message) and len(packets) == 1
    first, body = packets[0]
    assert first == 0x32
    payload = body[2 + len(TOPIC) + 2 :]
    assert orjson.loads(payload) == {
        "ts": 1_795_000_000_123, "values": {"temperature": 21.5, "humidity": 40, "active": True},
    }
    assert len(template.encode(65_535, 1_000_000_000_000)) == len(message)


def test_publish_only_qos_0_or_1() -> None:
    with pytest.raises(ValueError):
        PublishTemplate.build("t", b"x", qos=2)


def test_long_payload_takes_a_longer_remaining_length() -> None:
    message = PublishTemplate.build("t", b"x" * 200, qos=1).encode(1)
    assert message[1:3] == varint(3 + 2 + 200) and len(message) == 3 + 205


STREAM = (
    b"\x20\x02\x00\x00"  # CONNACK accepted
    + b"\x40\x02\x00\x01"  # PUBACK 1 (3.1.1)
    + b"\x40\x03\x00\x02\x87"  # PUBACK 2, MQTT 5, not authorized
    + b"\x40\x04\x00\x03\x10\x00"  # PUBACK 3, MQTT 5, no matching subscribers, empty properties
    + b"\xd0\x00"  # PINGRESP
    + b"\x30" + varint(300) + b"\x00\x01t" + b"y" * 297  # a PUBLISH with a two-byte remaining length
    + b"\x90\x03\x00\x07\x01"  # SUBACK
)


@pytest.mark.parametrize("step", [1, 2, 3, 5, 64, 10_000])
def test_split_packets_in_any_split(step: int) -> None:
    buffer = b""
    got: list[tuple[int, bytes]] = []
    for i in range(0, len(STREAM), step):
        buffer += STREAM[i : i + step]
        packets, end = split_packets(buffer)
        got += packets
        buffer = buffer[end:]
    assert buffer == b""
    assert [first for first, _ in got] == [0x20, 0x40, 0x40, 0x40, 0xD0, 0x30, 0x90]
    assert got[2][1] == b"\x00\x02\x87"
    assert len(got[5][1]) == 300


def test_malformed_remaining_length() -> None:
    with pytest.raises(MqttProtocolError):
        split_packets(b"\x40\xff\xff\xff\xff\x01")


def test_properties() -> None:
    body = b"\x00\x00" + varint(18) + b"\x21\x00\x0a" + b"\x1f\x00\x02ok" + b"\x26\x00\x01k\x00\x01v" + b"\x0b\x81\x01"
    props, end = read_properties(body, 2)
    assert end == len(body)
    assert props == {0x21: 10, 0x1F: b"ok", 0x26: (b"k", b"v"), 0x0B: 129}
    with pytest.raises(MqttProtocolError):
        read_properties(b"\x02\x7e\x00", 0)  # an unknown property


def test_connack_errors_are_named() -> None:
    assert connack_error(MQTT_311, 5) == "CONNACK refused: 0x05 not authorized"
    assert connack_error(MQTT_5, 0x86) == "CONNACK refused: 0x86 bad user name or password"
