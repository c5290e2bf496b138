"""What the CoAP load generator sends and reads: its workload spec and the few RFC 7252
datagrams it needs, encoded by hand (aiocoap's Message costs 6 to 30 microseconds a
datagram, more than the rest of the generator's work).

A request is a confirmable POST to /api/v1/{token}/telemetry with Content-Format 50
(application/json) and a 4-byte token: everything after the token is encoded once per
device, so sending is a 4-byte header, the token and that tail joined.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any

from fleetgate.simulator.workloads import DEFAULT_TELEMETRY, TelemetrySpec

VERSION = 1
CON, NON, ACK, RST = 0, 1, 2, 3
EMPTY, POST = 0x00, 0x02
CREATED = 0x41  # 2.01
TOKEN_LENGTH = 4

_URI_PATH, _CONTENT_FORMAT = 11, 12
_JSON = 50
_HEADER = struct.Struct("!BBH")
_CON_REQUEST = (VERSION << 6) | (CON << 4) | TOKEN_LENGTH


@dataclass(frozen=True, slots=True)
class CoapTelemetrySpec:
    """Devices (one per access token) posting ``body`` as confirmable CoAP requests.

    ``devices_per_socket``: devices sharing one UDP socket (one source port), as
    devices behind one NAT would; ``inflight``: requests a device has unanswered at a
    time (RFC 7252's NSTART is 1). ``first`` numbers the devices of a share.
    """

    tokens: tuple[str, ...]
    body: bytes = DEFAULT_TELEMETRY
    devices_per_socket: int = 50
    inflight: int = 1
    first: int = 0

    def __post_init__(self) -> None:
        if self.devices_per_socket < 1 or self.inflight < 1:
            raise ValueError("devices_per_socket and inflight must be positive")

    @property
    def datapoints(self) -> int:
        return TelemetrySpec((), self.body).datapoints

    @property
    def sockets(self) -> int:
        return -(-len(self.tokens) // self.devices_per_socket)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "coap", "tokens": list(self.tokens), "body": self.body.decode(),
            "devices_per_socket": self.devices_per_socket, "inflight": self.inflight, "first": self.first,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CoapTelemetrySpec:
        return cls(
            tuple(data["tokens"]), data["body"].encode(), int(data["devices_per_socket"]), int(data["inflight"]),
            int(data["first"]),
        )

    def split(self, parts: int) -> list[CoapTelemetrySpec]:
        """Disjoint shares of the devices, for ``parts`` generator processes."""
        size = -(-len(self.tokens) // parts)
        return [
            replace(self, tokens=self.tokens[i : i + size], first=self.first + i)
            for i in range(0, len(self.tokens), size)
        ]


def _option(number: int, delta_from: int, value: bytes) -> bytes:
    """One option, its number as a delta from the previous one (RFC 7252 3.1)."""
    out = bytearray()
    delta, length = number - delta_from, len(value)
    nibbles, extended = [], bytearray()
    for field in (delta, length):
        if field < 13:
            nibbles.append(field)
        elif field < 269:
            nibbles.append(13)
            extended.append(field - 13)
        else:
            nibbles.append(14)
            extended += struct.pack("!H", field - 269)
    out.append(nibbles[0] << 4 | nibbles[1])
    out += extended
    out += value
    return bytes(out)


def request_tail(path: tuple[str, ...], payload: bytes) -> bytes:
    """The options and payload of a JSON POST to ``path``: what follows the header and token."""
    out = bytearray()
    last = 0
    for segment in path:
        out += _option(_URI_PATH, last, segment.encode())
        last = _URI_PATH
    out += _option(_CONTENT_FORMAT, last, bytes((_JSON,)))
    if payload:
        out += b"\xff" + payload
    return bytes(out)


def telemetry_tail(token: str, payload: bytes) -> bytes:
    return request_tail(("api", "v1", token, "telemetry"), payload)


def con_post(mid: int, token: bytes, tail: bytes) -> bytes:
    return _HEADER.pack(_CON_REQUEST, POST, mid) + token + tail


def empty_ack(mid: int) -> bytes:
    return _HEADER.pack((VERSION << 6) | (ACK << 4), EMPTY, mid)


@dataclass(frozen=True, slots=True)
class Header:
    mtype: int
    code: int
    mid: int
    token: bytes


def parse_header(data: bytes) -> Header | None:
    """Type, code, message id and token of a datagram; None if it is not CoAP version 1."""
    if len(data) < 4:
        return None
    first, code, mid = _HEADER.unpack_from(data)
    tkl = first & 0x0F
    if first >> 6 != VERSION or tkl > 8 or len(data) < 4 + tkl:
        return None
    return Header((first >> 4) & 0x03, code, mid, data[4 : 4 + tkl])


def code_name(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"
