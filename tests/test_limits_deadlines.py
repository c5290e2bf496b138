"""Slowloris (the table of docs/limits.md): a client that opens TCP or TLS and sends nothing, or
dribbles bytes, is closed in bounded time on HTTP, HTTPS, MQTT and MQTTS."""

from __future__ import annotations

import asyncio
import time

import pytest

from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.packets import Connect, Disconnect, Publish, Reason
from tests.mqtt_raw import RawMqtt
from tests.limits_support import limited_gateway, mqtt_device, open_raw, port_of, provisioned_token, read_to_eof

DEADLINE = 0.5
BOUND = 3.0  # closed within this long, whatever the client does


@pytest.fixture(scope="module")
async def gw(database_url, tmp_path_factory):
    async with limited_gateway(
        database_url, tmp_path_factory.mktemp("deadlines"), tls=True, tls_handshake_timeout_seconds=DEADLINE,
        http_request_timeout_seconds=DEADLINE, http_idle_seconds=DEADLINE, mqtt_connect_timeout_seconds=DEADLINE,
    ) as running:
        yield running


async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> tuple[bytes, float]:
    """Send ``data`` a byte every 0.1 s until the server closes; what it sent, and when it closed."""
    started = time.monotonic()
    closed = asyncio.ensure_future(read_to_eof(reader, timeout=BOUND * 3))
    for byte in data:
        if closed.done():
            break
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.wait([closed], timeout=0.1)
    received = await closed
    writer.close()
    return received, time.monotonic() - started


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[bytes, float]:
    started = time.monotonic()
    received = await read_to_eof(reader, timeout=BOUND * 3)
    writer.close()
    return received, time.monotonic() - started


@pytest.mark.parametrize("name", ["https", "mqtts"])
async def test_tls_handshake_deadline(gw, name: str) -> None:
    # Plain TCP to the TLS port: no ClientHello, then a ClientHello dribbled.
    received, elapsed = await silent(*await asyncio.open_connection("127.0.0.1", port_of(gw, name)))
    assert received == b"" and elapsed < BOUND
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200)
    received, elapsed = await dribble(*await asyncio.open_connection("127.0.0.1", port_of(gw, name)), hello)
    assert elapsed < BOUND


@pytest.mark.parametrize("name", ["http", "https"])
async def test_http_silent_connection_closed(gw, name: str) -> None:
    received, elapsed = await silent(*await open_raw(gw, name))
    assert received == b"" and elapsed < BOUND


@pytest.mark.parametrize("name", ["http", "https"])
async def test_http_dribbled_request(gw, name: str) -> None:
    token = await provisioned_token(gw)
    request = f"POST /api/v1/{token}/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{{\"a\":1}}".encode()
    received, elapsed = await dribble(*await open_raw(gw, name), request * 3)
    assert received.startswith(b"HTTP/1.1 408 ") and elapsed < BOUND
    # The deadline is per request, from its first byte: a client sending whole requests is served.
    reader, writer = await open_raw(gw, name)
    for _ in range(3):
        writer.write(request)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    writer.close()


@pytest.mark.parametrize("name", ["mqtt", "mqtts"])
async def test_mqtt_connect_deadline(gw, name: str) -> None:
    received, elapsed = await silent(*await open_raw(gw, name))
    assert received == b"" and elapsed < BOUND
    # A CONNECT dribbled: the deadline runs from the accept, not from the last byte.
    connect = codec.encode(Connect(5, "slow", keep_alive=60, username="x" * 40), 5)
    received, elapsed = await dribble(*await open_raw(gw, name), connect)
    assert received == b"" and elapsed < BOUND


async def test_mqtt_keep_alive_counts_packets(gw) -> None:
    """After CONNECT, bytes dribbled into a packet do not keep the connection alive: only whole packets do."""
    token = await provisioned_token(gw)
    client = await mqtt_device(gw, token, 5)
    await client.close()
    reader, writer = await open_raw(gw, "mqtt")
    raw = RawMqtt(reader, writer, 5)
    assert (await raw.connect(username=token, client_id="ka", keep_alive=1)).reason_code == 0
    publish = codec.encode(Publish("v1/devices/me/telemetry", b'{"slow":1}' + b" " * 100, 0), 5)
    received, elapsed = await dribble(reader, writer, publish)
    assert codec.decode(received, 5) == [Disconnect(Reason.KEEP_ALIVE_TIMEOUT)]
    assert elapsed < 1.5 + BOUND
