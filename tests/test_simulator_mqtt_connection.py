"""One load generator MQTT connection's packet ids, acknowledgements and bytes, driven
through a recording transport."""

from __future__ import annotations

import asyncio

import pytest

from fleetgate.simulator.mqtt_connection import MqttConnection
from fleetgate.simulator.mqtt_packets import (
    DISCONNECT_PACKET,
    MQTT_5,
    MQTT_311,
    PINGREQ_PACKET,
    PublishTemplate,
    split_packets,
)


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


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("timestamp", [False, True])
async def test_publish_writes_the_templates_messages(qos: int, timestamp: bool) -> None:
    template = PublishTemplate.build("t", b'{"a":1}', qos=qos, timestamp=timestamp)
    conn = MqttConnection(0, b"CONNECT", template, window=10)
    transport = RecordingTransport()
    conn.connection_made(transport)
    transport.written.clear()
    conn.publish(3, 5, ping=True)
    packets, end = split_packets(bytes(transport.written))
    assert end == len(transport.written) and conn.sent == 3
    assert [first for first, _ in packets] == [0x30 | qos << 1] * 3 + [0xC0]
    if not timestamp:
        assert bytes(transport.written) == b"".join(template.encode(i if qos else 0) for i in (1, 2, 3)) + PINGREQ_PACKET
    assert len({len(body) for _, body in packets[:3]}) == 1
    assert list(conn.inflight.values()) == ([5, 5, 5] if qos else [])
