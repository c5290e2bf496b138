"""Helpers for the CoAP tests: an aiocoap client context, requests, and the device a test uses."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiocoap
import orjson
from aiocoap import Code, Message

from tests.support import Tenant

TIMEOUT = 10


@asynccontextmanager
async def coap_client() -> AsyncIterator[aiocoap.Context]:
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        yield context
    finally:
        await context.shutdown()


async def request(context: aiocoap.Context, code: Code, uri: str, payload: bytes = b"", **options: Any) -> Message:
    """One request's (final) response; aiocoap splits a large payload into Block1 blocks itself."""
    message = Message(code=code, uri=uri, payload=payload, **options)
    return await context.request(message).response


async def provision_device(context: aiocoap.Context, coap_url: str, tenant: Tenant) -> tuple[str, str]:
    name = "coap-" + secrets.token_hex(4)
    body = orjson.dumps({"deviceName": name, "provisionDeviceKey": tenant.provision_key,
                         "provisionDeviceSecret": tenant.provision_secret})
    response = await request(context, Code.POST, f"{coap_url}/api/v1/provision", body)
    assert response.code == Code.CREATED, response
    return name, orjson.loads(response.payload)["credentialsValue"]


async def device_id_of(gateway: Any, tenant: Tenant, name: str) -> str:
    return await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE name = $1 AND project_id = $2", name, tenant.project_id)


def port_of(url: str) -> int:
    """The port of a coap://host:port URL."""
    return int(url.rsplit(":", 1)[1])


def coap_url_of(gateway: Any) -> str:
    """A gateway's CoAP listener, coap://127.0.0.1:port (for gateways other than the shared one)."""
    return next(listener.url for listener in gateway.listeners if listener.name == "coap")


async def observe(context: aiocoap.Context, uri: str, **options: Any) -> tuple[Message, Any, Any]:
    """A GET with Observe: 0: its first response, an iterator of the notifications that follow, and
    the request (``request.observation.cancel()`` stops it on this side)."""
    started = context.request(Message(code=Code.GET, uri=uri, observe=0, **options))
    first = await started.response
    return first, aiter(started.observation), started
