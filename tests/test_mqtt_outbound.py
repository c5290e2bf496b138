"""The downlink's packet ids and flow control, on their own (no socket: the bytes are decoded back)."""

from __future__ import annotations

from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.outbound import Outbound


class Wire:
    def __init__(self) -> None:
        self.decoder = codec.Decoder(protocol_level=5)
        self.sent: list = []

    def write(self, data: bytes) -> None:
        self.sent.extend(self.decoder.feed(data))


def outbound(receive_maximum: int, backlog_limit: int = 10) -> tuple[Outbound, Wire]:
    wire = Wire()
    out = Outbound(wire.write, backlog_limit)
    out.version = 5
    out.receive_maximum = receive_maximum
    return out, wire


def test_qos_0_is_never_held_back() -> None:
    out, wire = outbound(receive_maximum=1)
    out.publish("a", b"1", 1)
    out.publish("a", b"2", 0)
    assert [(p.payload, p.qos) for p in wire.sent] == [(b"1", 1), (b"2", 0)]
    assert out.outstanding == 1 and out.waiting == 0


def test_messages_beyond_the_receive_maximum_wait_in_order() -> None:
    out, wire = outbound(receive_maximum=2)
    for n in range(5):
        out.publish("a", str(n).encode(), 1)
    assert [p.payload for p in wire.sent] == [b"0", b"1"]
    out.acknowledged(wire.sent[1].packet_id)
    assert [p.payload for p in wire.sent] == [b"0", b"1", b"2"]
    out.acknowledged(wire.sent[0].packet_id)
    out.acknowledged(wire.sent[2].packet_id)
    assert [p.payload for p in wire.sent] == [b"0", b"1", b"2", b"3", b"4"]
    assert out.waiting == 0


def test_an_unknown_acknowledgement_changes_nothing() -> None:
    out, wire = outbound(receive_maximum=1)
    out.publish("a", b"0", 1)
    out.publish("a", b"1", 1)
    out.acknowledged(999)
    assert len(wire.sent) == 1 and out.outstanding == 1


def test_a_full_backlog_refuses_more() -> None:
    out, wire = outbound(receive_maximum=1, backlog_limit=2)
    for n in range(5):
        out.publish("a", str(n).encode(), 1)
    assert out.waiting == 2
    out.acknowledged(wire.sent[0].packet_id)
    out.acknowledged(wire.sent[1].packet_id)
    assert [p.payload for p in wire.sent] == [b"0", b"1", b"2"]


def test_packet_ids_of_outstanding_messages_are_not_reused() -> None:
    out, wire = outbound(receive_maximum=65_535)
    out.publish("a", b"first", 1)
    first = wire.sent[0].packet_id
    for _ in range(65_534):
        out.publish("a", b"x", 1)
        out.acknowledged(wire.sent[-1].packet_id)
    # The ids wrapped around: the next one skips the id still outstanding.
    out.publish("a", b"y", 1)
    assert wire.sent[-1].packet_id != first
    assert wire.sent[-1].packet_id == first % 65_535 + 1


def test_nothing_over_the_clients_maximum_packet_size_is_sent() -> None:
    out, wire = outbound(receive_maximum=5)
    out.max_packet_size = 64
    out.publish("a", b"x" * 100, 1)
    out.publish("a", b"small", 1)
    assert [p.payload for p in wire.sent] == [b"small"]
    assert out.outstanding == 1
