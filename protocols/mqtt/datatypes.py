"""MQTT's data representation (section 1.5 of MQTT 3.1.1 and MQTT 5) and the codec's one error.

Decoding reads through a :class:`Reader` bounded to one packet, so a length
field that points past the packet is caught at the read, never by reading the
next packet's bytes; every check raises :class:`ProtocolError` with the reason
code MQTT 5 gives for it. Encoding appends to a bytearray and raises
ValueError for values the format cannot carry (a bug in the caller, not the
peer).
"""

from __future__ import annotations

import struct

from fleetgate.protocols.mqtt.packets import Reason

MAX_VARINT = 268_435_455  # 0xFF 0xFF 0xFF 0x7F, the largest four-byte Variable Byte Integer (1.5.5)
MAX_UINT16 = 0xFFFF
MAX_UINT32 = 0xFFFF_FFFF
_VARINT_MAX_BYTES = 4
_CONTINUATION = 0x80

_UINT16 = struct.Struct(">H")
_UINT32 = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid MQTT packet; ``reason_code`` is a :class:`Reason`.

    The only exception decoding raises, whatever the bytes. The connection is
    to be closed (after a DISCONNECT or CONNACK with ``reason_code`` on MQTT 5).
    """

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(f"{message} (reason code 0x{reason_code:02X})")
        self.reason_code = reason_code
        self.message = message


def malformed(message: str) -> ProtocolError:
    """MQTT 5 1.2: a packet that cannot be parsed according to the specification."""
    return ProtocolError(Reason.MALFORMED_PACKET, message)


def protocol_error(message: str) -> ProtocolError:
    """MQTT 5 4.13: a packet that parses but holds data the protocol does not allow."""
    return ProtocolError(Reason.PROTOCOL_ERROR, message)


def decode_utf8(raw: bytes) -> str:
    """A UTF-8 Encoded String's characters (1.5.4).

    Python's strict decoder refuses ill-formed sequences, overlong forms and
    encoded UTF-16 surrogates (MQTT-1.5.4-1); it keeps a BOM (MQTT-1.5.4-3).
    """
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise malformed("ill-formed UTF-8 or a UTF-16 surrogate in a string (MQTT-1.5.4-1)") from None
    if "\x00" in text:
        raise malformed("U+0000 in a UTF-8 string (MQTT-1.5.4-2)")
    return text


def has_wildcard(topic: str) -> bool:
    return "+" in topic or "#" in topic


class Reader:
    """A cursor over ``data[pos:end]``, one packet (or its property block)."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def at_end(self) -> bool:
        return self.pos >= self.end

    def expect_end(self, what: str) -> None:
        if self.pos != self.end:
            raise malformed(f"{self.end - self.pos} bytes after the end of the {what}")

    def _advance(self, size: int) -> int:
        start = self.pos
        stop = start + size
        if stop > self.end:
            raise malformed("a field runs past the end of the packet")
        self.pos = stop
        return start

    def byte(self) -> int:
        return self.data[self._advance(1)]

    def uint16(self) -> int:
        return _UINT16.unpack_from(self.data, self._advance(2))[0]

    def uint32(self) -> int:
        return _UINT32.unpack_from(self.data, self._advance(4))[0]

    def varint(self) -> int:
        value, self.pos = read_varint(self.data, self.pos, self.end)
        if value < 0:
            raise malformed("a Variable Byte Integer runs past the end of the packet")
        return value

    def binary(self) -> bytes:
        """Binary Data (1.5.6): a two-byte length, then that many bytes."""
        size = self.uint16()
        start = self._advance(size)
        return self.data[start : start + size]

    def string(self) -> str:
        return decode_utf8(self.binary())


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A Variable Byte Integer (1.5.5) at ``pos`` and the position after it; (-1, pos) if cut at ``end``.

    At most four bytes, in the fewest bytes that hold the value (MQTT-1.5.5-1),
    so a trailing 0x00 continuation or a fifth byte is malformed.
    """
    value = 0
    for index in range(_VARINT_MAX_BYTES):
        if pos + index >= end:
            return -1, pos
        byte = data[pos + index]
        value |= (byte & 0x7F) << (7 * index)
        if byte < _CONTINUATION:
            if byte == 0 and index:
                raise malformed("a Variable Byte Integer not in its shortest form (MQTT-1.5.5-1)")
            return value, pos + index + 1
    raise malformed("a Variable Byte Integer longer than four bytes (1.5.5)")


# Encoding.

_SMALL_VARINTS = tuple(bytes((value,)) for value in range(_CONTINUATION))


def varint(value: int) -> bytes:
    if value < _CONTINUATION:
        return _SMALL_VARINTS[value]
    if value > MAX_VARINT:
        raise ValueError(f"{value} does not fit a Variable Byte Integer")
    out = bytearray()
    while value >= _CONTINUATION:
        out.append((value & 0x7F) | _CONTINUATION)
        value >>= 7
    out.append(value)
    return bytes(out)


def put_uint16(out: bytearray, value: int) -> None:
    if not 0 <= value <= MAX_UINT16:
        raise ValueError(f"{value} does not fit a Two Byte Integer")
    out += _UINT16.pack(value)


def put_uint32(out: bytearray, value: int) -> None:
    if not 0 <= value <= MAX_UINT32:
        raise ValueError(f"{value} does not fit a Four Byte Integer")
    out += _UINT32.pack(value)


def put_binary(out: bytearray, value: bytes) -> None:
    if len(value) > MAX_UINT16:
        raise ValueError(f"{len(value)} bytes do not fit a length-prefixed field (1.5.6)")
    out += _UINT16.pack(len(value))
    out += value


def put_string(out: bytearray, text: str) -> None:
    """A UTF-8 Encoded String; a lone surrogate fails ``str.encode`` (a ValueError)."""
    if "\x00" in text:
        raise ValueError("U+0000 cannot be sent in a UTF-8 string (MQTT-1.5.4-2)")
    put_binary(out, text.encode())
