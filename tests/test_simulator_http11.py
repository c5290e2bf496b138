"""The load generator's HTTP/1.1 response parser, fed in every possible split."""

from __future__ import annotations

import pytest

from fleetgate.simulator.http11 import ProtocolError, ResponseParser, encode_post

AIOHTTP_200 = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Type: application/octet-stream\r\n"
    b"Date: Sat, 21 Nov 2026 20:00:00 GMT\r\nServer: Python/3.11 aiohttp/3.14\r\n\r\n"
)
WITH_BODY = b'HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{"a":"hello"}'
CHUNKED = (
    b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4\r\nbusy\r\n3;x=1\r\n!!!\r\n0\r\nX-T: 1\r\n\r\n"
)


def feed_all(stream: bytes, step: int) -> tuple[list[tuple[int, bytes]], ResponseParser]:
    got: list[tuple[int, bytes]] = []
    parser = ResponseParser(lambda status, body: got.append((status, body)))
    for i in range(0, len(stream), step):
        parser.feed(stream[i : i + step])
    return got, parser


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_pipelined_responses_in_any_split(step: int) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    stream = AIOHTTP_200 + WITH_BODY + interim + CHUNKED + AIOHTTP_200
    got, parser = feed_all(stream, step)
    assert got == [(200, b""), (200, b'{"a":"hello"}'), (503, b"busy!!!"), (200, b"")]
    assert parser.idle


def test_body_until_close() -> None:
    got, parser = feed_all(b"HTTP/1.0 200 OK\r\n\r\npartial", 3)
    assert got == [] and parser.closing
    parser.feed(b" body")
    parser.feed_eof()
    assert got == [(200, b"partial body")]


def test_connection_close_is_noticed() -> None:
    _, parser = feed_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 5)
    assert parser.closing


def test_no_body_statuses() -> None:
    got, _ = feed_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n", 4)
    assert got == [(204, b""), (304, b"")]


@pytest.mark.parametrize("garbage", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    with pytest.raises(ProtocolError):
        feed_all(garbage, 100)


def test_endless_head_is_refused() -> None:
    parser = ResponseParser(lambda status, body: None)
    with pytest.raises(ProtocolError):
        for _ in range(100):
            parser.feed(b"X" * 1000)


def test_encoded_request() -> None:
    request = encode_post("127.0.0.1:8080", "/api/v1/abc/telemetry", b'{"t":1}')
    assert request == (
        b"POST /api/v1/abc/telemetry HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
        b"Content-Length: 7\r\n\r\n{\"t\":1}"
    )


def test_endless_header_is_refused() -> None:
    parser = ResponseParser(lambda status, body: None)
    parser.feed(b"HTTP/1.1 200 OK\r\nX-Long: ")
    with pytest.raises(ProtocolError):
        for _ in range(100):
            parser.feed(b"x" * 1000)


@pytest.mark.parametrize("cut", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\npart",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\npart",
])
def test_a_framed_body_cut_short_is_no_response(cut: bytes) -> None:
    got, parser = feed_all(cut, 5)
    parser.feed_eof()
    assert got == [] and not parser.idle
