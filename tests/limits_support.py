"""Helpers for the abuse-limit tests: a gateway with given limits, raw HTTP, provisioned devices."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from fleetgate.app import Gateway
from fleetgate.protocols.mqtt.packets import Publish
from tests.mqtt_raw import RawMqtt
from tests.pki import self_signed
from tests.support import Tenant, free_port, gateway_settings, new_tenant, running_gateway


@asynccontextmanager
async def limited_gateway(database_url: str, directory: Any, *, tls: bool = False, **limits: Any
                          ) -> AsyncIterator[Gateway]:
    extra: dict[str, Any] = {}
    if tls:
        cert, key = self_signed(directory)
        extra = {"https_port": free_port(), "mqtts_port": free_port(), "tls_cert_file": cert, "tls_key_file": key}
    settings = gateway_settings(str(directory), **extra, **limits)
    async with running_gateway(database_url, settings) as gw:
        yield gw


def port_of(gw: Gateway, name: str) -> int:
    return int(next(listener.url for listener in gw.listeners if listener.name == name).rsplit(":", 1)[1])


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def open_raw(gw: Gateway, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    tls = client_tls() if name in ("https", "mqtts") else None
    return await asyncio.open_connection("127.0.0.1", port_of(gw, name), ssl=tls)


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes (TimeoutError if it does not close in time)."""
    chunks = []
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionError, ssl.SSLError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def header(response: bytes, name: str) -> str | None:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


async def http_request(gw: Gateway, request: bytes, name: str = "http") -> bytes:
    """One request on its own connection (closed after it); the raw response."""
    reader, writer = await open_raw(gw, name)
    writer.write(request)
    await writer.drain()
    response = await read_to_eof(reader)
    writer.close()
    return response


def post(path: str, body: bytes, close: bool = True) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + connection + b"\r\n" + body


async def provisioned_token(gw: Gateway, tenant: Tenant | None = None) -> str:
    tenant = tenant or await new_tenant(gw.services)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port_of(gw, 'http')}") as http:
        async with http.post("/api/v1/provision", json={
            "deviceName": "lim-" + secrets.token_hex(4), "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}) as resp:
            body = orjson.loads(await resp.read())
    assert body["status"] == "SUCCESS", body
    return body["credentialsValue"]


async def mqtt_device(gw: Gateway, token: str, level: int = 5, name: str = "mqtt") -> RawMqtt:
    reader, writer = await open_raw(gw, name)
    client = RawMqtt(reader, writer, level)
    connack = await client.connect(username=token, client_id="c-" + secrets.token_hex(4))
    assert connack.reason_code == 0, connack
    return client


async def publish_qos1(client: RawMqtt, topic: str, payload: bytes, packet_id: int = 1):
    await client.send(Publish(topic, payload, qos=1, packet_id=packet_id))
    return await client.packet()
