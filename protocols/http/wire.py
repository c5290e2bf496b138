"""HTTP/1.1 responses as bytes, for the device API's own protocol."""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus


# eq=False: replies hash by identity, which keeps the encoding cache cheap to consult;
# the replies most requests get are module constants.
@dataclass(frozen=True, slots=True, eq=False)
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return cls(status, text.encode(), "text/plain; charset=utf-8", headers)

    @classmethod
    def json(cls, body: bytes, status: int = 200) -> Reply:
        return cls(status, body, "application/json")


OK = Reply(200)

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_date_second = 0
_date_header = b""


def _date() -> bytes:
    """RFC 9110 asks an origin server for a Date header; it changes once a second."""
    global _date_second, _date_header
    now = int(time.time())
    if now != _date_second:
        _date_second, _date_header = now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
    return _date_header


_encoded: dict[tuple[Reply, bool], bytes] = {}
_encoded_second = 0
_CACHED_BODY_BYTES = 256


def encode(reply: Reply, keep_alive: bool) -> bytes:
    """The response's bytes; the few replies most requests get are encoded once a second."""
    global _encoded_second
    if len(reply.body) > _CACHED_BODY_BYTES:
        return _encode(reply, keep_alive)
    date = _date()
    if _date_second != _encoded_second or len(_encoded) > 1024:
        _encoded.clear()
        _encoded_second = _date_second
    key = (reply, keep_alive)
    data = _encoded.get(key)
    if data is None:
        data = _encoded[key] = _encode(reply, keep_alive, date)
    return data


def _encode(reply: Reply, keep_alive: bool, date: bytes | None = None) -> bytes:
    head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, '')}\r\n".encode(), date or _date()]
    if reply.content_type:
        head.append(f"Content-Type: {reply.content_type}\r\n".encode())
    for name, value in reply.headers:
        head.append(f"{name}: {value}\r\n".encode())
    head.append(f"Content-Length: {len(reply.body)}\r\n".encode())
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    head.append(reply.body)
    return b"".join(head)
