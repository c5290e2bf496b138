"""atheris harness for the MQTT codec (protocols/mqtt/decode.py, bodies.py, encode.py).

Whatever the bytes, fed whole or in pieces, at either protocol level:
- the decoder raises nothing but ProtocolError;
- split feeds refuse the same streams and, when they accept, decode the same packets as one feed
  (a refused feed returns nothing of its chunk: the packets before the violation in the same chunk
  are dropped, as Decoder.feed documents, so only acceptance is compared then);
- every packet decoded re-encodes at its stream's level to bytes that decode again, to a packet that
  encodes to the same bytes; on MQTT 5 to an equal packet (3.1.1 maps some codes on purpose: a
  CONNACK return code 4 is decoded but sent as 5, as ThingsBoard does).

Run: ``python3 -m fuzz.mqtt_codec -max_total_time=20`` (libFuzzer flags); a crash leaves
``crash-<sha1>`` with the input, to become a regression test in tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fleetgate.protocols.mqtt import codec
    from fleetgate.protocols.mqtt.packets import Connect


def decode_stream(data: bytes, level: int | None, cuts: list[int]) -> tuple[list, int | None, bool]:
    """The packets of ``data`` fed in pieces at ``cuts``; the final level; whether it was refused."""
    decoder = codec.Decoder(protocol_level=level)
    packets: list = []
    start = 0
    try:
        for cut in [*cuts, len(data)]:
            packets += decoder.feed(data[start:cut])
            start = cut
    except codec.ProtocolError:
        return packets, decoder.protocol_level, True
    return packets, decoder.protocol_level, False


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    level = (None, 4, 5)[data[0] % 3]
    step = data[1] or 1
    body = data[2:]
    whole, _, refused = decode_stream(body, level, [])
    pieces, _, refused_in_pieces = decode_stream(body, level, list(range(step, len(body), step)))
    assert refused == refused_in_pieces, (refused, refused_in_pieces)
    if not refused:
        assert pieces == whole, (pieces, whole)
    stream_level = level
    for packet in whole:
        if isinstance(packet, Connect):
            stream_level = packet.protocol_level
        encoded = codec.encode(packet, stream_level or 4)
        again = codec.decode(encoded, stream_level if not isinstance(packet, Connect) else None)
        assert len(again) == 1, (packet, again)
        assert codec.encode(again[0], stream_level or 4) == encoded, (packet, again)
        if stream_level == 5:
            assert again == [packet], (packet, again)


def main() -> None:
    atheris.instrument_all()
    atheris.Setup(sys.argv, lambda data: check(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
