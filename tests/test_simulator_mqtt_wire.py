"""The load generator's MQTT bytes: encodings checked byte by byte, the reader fed in every split,
and one connection's packet ids and acknowledgements driven through a recording transport."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from simulator.mqtt_wire import (
    DISCONNECT_PACKET,
    MQTT_5,
    MQTT_311,
    PINGREQ_PACKET,
    MqttConnection,
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


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Owner:
    """Records what a connection tells its owner."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.failures: list[int] = []
        self.closings: list[tuple[str, list[int]]] = []
        self.pongs = 0

    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        self.started += started
        self.failures += failures or []

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        self.closings.append((reason, lost))

    def pong(self, conn: MqttConnection) -> None:
        self.pongs += 1


def connected(version: int = MQTT_311, window: int = 10, connack: bytes = b"\x20\x02\x00\x00") -> tuple[
    MqttConnection, RecordingTransport, Owner
]:
    conn = MqttConnection(0, b"CONNECT", PublishTemplate.build("t", b"x", qos=1, version=version), window=window,
                          version=version)
    transport = RecordingTransport()
    conn.connection_made(transport)
    assert bytes(transport.written) == b"CONNECT"
    transport.written.clear()
    conn.data_received(connack)
    owner = Owner()
    conn.owner = owner
    return conn, transport, owner


def written_ids(transport: RecordingTransport) -> list[int]:
    packets, _ = split_packets(bytes(transport.written))
    transport.written.clear()
    return [int.from_bytes(body[3:5], "big") for first, body in packets if first == 0x32]


async def test_packet_ids_cycle_and_skip_those_in_flight() -> None:
    conn, transport, owner = connected(window=65_535)
    assert conn.connected.result() == 0
    conn.publish(3, 100)
    assert written_ids(transport) == [1, 2, 3]
    conn.data_received(b"\x40\x02\x00\x02")  # 2 answered; 1 and 3 stay in flight
    assert owner.started == [100]
    conn.publish(65_532, 200)  # ids 4..65535: the counter reaches the top
    assert written_ids(transport)[-1] == 65_535
    conn.data_received(b"\x40\x02\xff\xff")
    conn.publish(2, 300)  # wraps to 1 (in flight: skipped), 2 (free), 3 (in flight), 4 (in flight)...
    assert written_ids(transport) == [2, 65_535]
    assert len(conn.inflight) == 65_535 and conn.free == 0


async def test_acknowledgements_in_one_chunk_and_split() -> None:
    conn, _, owner = connected(version=MQTT_5)
    conn.publish(4, 7)
    chunk = b"\x40\x02\x00\x01" + b"\x40\x03\x00\x02\x87" + b"\x40\x04\x00\x03\x10\x00" + b"\x40\x03\x00\x04\x00"
    for i in range(0, len(chunk), 3):
        conn.data_received(chunk[i : i + 3])
    assert owner.started == [7, 7, 7]
    assert owner.failures == [0x87]
    assert not conn.inflight


async def test_receive_maximum_lowers_the_window() -> None:
    conn, _, _ = connected(version=MQTT_5, window=10, connack=b"\x20\x06\x00\x00\x03\x21\x00\x04")
    assert conn.window == 4 and conn.free == 4


async def test_refused_connack_and_lost_connection() -> None:
    conn, transport, owner = connected(connack=b"\x20\x02\x00\x05")
    assert conn.connected.result() == 5 and not conn.open and transport.closed

    conn, transport, owner = connected()
    conn.publish(2, 9)
    conn.ping()
    conn.data_received(b"\xd0\x00")
    assert owner.pongs == 1
    conn.connection_lost(None)
    assert owner.closings == [("connection closed by the server", [9, 9])]
    conn.disconnect()
    assert not bytes(transport.written).endswith(DISCONNECT_PACKET)  # not written on a dead connection


async def test_server_disconnect_and_garbage() -> None:
    conn, _, owner = connected(version=MQTT_5)
    conn.data_received(b"\xe0\x01\x8b")
    assert owner.closings == [("DISCONNECT from the server: 0x8b server shutting down", [])]

    conn, _, owner = connected()
    conn.data_received(b"\x40\x02\x00\x09")  # never sent
    assert owner.closings[0][0].startswith("bad packet from the server: PUBACK for a packet id")


async def test_ping_and_disconnect_bytes() -> None:
    conn, transport, _ = connected()
    conn.ping()
    conn.publish(1, 0, ping=True)
    conn.disconnect()
    data = bytes(transport.written)
    assert data.startswith(PINGREQ_PACKET) and data.endswith(PINGREQ_PACKET + DISCONNECT_PACKET)
    assert transport.closed
