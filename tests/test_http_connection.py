"""The device API's own HTTP/1.1 protocol, driven over a raw socket: what clients and
proxies do at the edges (pipelining, 100-continue, chunked bodies, bad requests, limits)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.support import Tenant


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def closed(self) -> bool:
        return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def raw(gateway):
    host, port = gateway.listeners[0].url.removeprefix("http://").split(":")
    client = RawClient(*await asyncio.open_connection(host, int(port)))
    yield client
    await client.close()


@pytest.fixture
async def token(http, tenant: Tenant) -> str:
    request = {"deviceName": "raw-http", "provisionDeviceKey": tenant.provision_key,
               "provisionDeviceSecret": tenant.provision_secret}
    async with http.post("/api/v1/provision", json=request) as resp:
        return orjson.loads(await resp.read())["credentialsValue"]


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def test_pipelined_requests_are_answered_in_order(raw, token) -> None:
    good = post(f"/api/v1/{token}/telemetry", b'{"a":1}')
    bad = post(f"/api/v1/{token}/telemetry", b"{nope")
    await raw.send(good + bad + good)
    statuses = [(await raw.response())[0] for _ in range(3)]
    assert statuses == [200, 400, 200]


async def test_expect_100_continue_gets_continue_then_the_answer(raw, token) -> None:
    await raw.send(f"POST /api/v1/{token}/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n"
                   "Expect: 100-continue\r\n\r\n".encode())
    assert await raw.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    await raw.send(b'{"a":1}')
    assert (await raw.response())[0] == 200


async def test_chunked_bodies_are_accepted(raw, token) -> None:
    await raw.send(f"POST /api/v1/{token}/telemetry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n".encode())
    assert (await raw.response())[0] == 200


async def test_malformed_request_is_answered_400_and_closed(raw) -> None:
    await raw.send(b"THIS IS NOT HTTP\r\n\r\n")
    status, headers, body = await raw.response()
    assert status == 400 and headers["connection"] == "close"
    assert await raw.closed()


async def test_declared_oversize_body_is_refused_unread_and_closed(raw, token, gateway) -> None:
    limit = gateway.settings.max_payload_bytes
    await raw.send(f"POST /api/v1/{token}/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n\r\n"
                   .encode())
    status, headers, _ = await raw.response()
    assert status == 413 and headers["connection"] == "close"
    assert await raw.closed()


async def test_streamed_oversize_body_is_refused(raw, token, gateway) -> None:
    chunk = b"x" * 8192
    chunks = gateway.settings.max_payload_bytes // len(chunk) + 2
    await raw.send(f"POST /api/v1/{token}/telemetry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   .encode())
    try:
        for _ in range(chunks):
            await raw.send(b"2000\r\n" + chunk + b"\r\n")
    except ConnectionError:
        pass  # the server may close before the client has sent everything
    assert (await raw.response())[0] == 413


async def test_oversize_body_with_unknown_token_is_401(raw, gateway) -> None:
    limit = gateway.settings.max_payload_bytes
    await raw.send(f"POST /api/v1/no-such-token/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: {limit * 2}\r\n\r\n"
                   .encode())
    status, _, body = await raw.response()
    assert (status, body) == (401, b"")


@pytest.mark.parametrize(("request_line", "status"), [
    ("GET /nothing HTTP/1.1", 404),
    ("GET /api/v1/x/unknown HTTP/1.1", 404),
    ("GET /api/v1/x/telemetry HTTP/1.1", 405),
    ("DELETE /api/v1/x/attributes HTTP/1.1", 405),
    ("GET /api/v1/provision HTTP/1.1", 405),
])
async def test_unknown_routes_and_methods(raw, request_line: str, status: int) -> None:
    await raw.send(f"{request_line}\r\nHost: x\r\n\r\n".encode())
    got, headers, _ = await raw.response()
    assert got == status
    if status == 405:
        assert "POST" in headers["allow"] or "GET" in headers["allow"]


async def test_http_1_0_and_connection_close_end_the_connection(raw, token) -> None:
    await raw.send(f"POST /api/v1/{token}/telemetry HTTP/1.0\r\nContent-Length: 7\r\n\r\n".encode() + b'{"a":1}')
    status, headers, _ = await raw.response()
    assert status == 200 and headers["connection"] == "close"
    assert await raw.closed()


async def test_keep_alive_serves_many_requests_on_one_connection(raw, token) -> None:
    for i in range(20):
        await raw.send(post(f"/api/v1/{token}/telemetry", orjson.dumps({"n": i})))
        status, headers, _ = await raw.response()
        assert status == 200 and "connection" not in headers and "date" in headers


async def test_percent_encoded_token(raw, token) -> None:
    encoded = "".join(f"%{b:02X}" for b in token.encode())
    await raw.send(post(f"/api/v1/{encoded}/telemetry", b'{"a":1}'))
    assert (await raw.response())[0] == 200
