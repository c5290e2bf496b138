"""Helpers shared by the tests: free ports, a gateway on them, a provisioned project, devices
provisioned over the device API or created ahead of time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tempfile
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from fleetgate import config
from fleetgate.app import Gateway
from fleetgate.storage_wiring import Services
from fleetgate.core import credentials as creds
from fleetgate.core.ids import new_id
from fleetgate.core.model import Credentials, Device


async def read_until(process: asyncio.subprocess.Process, prefix: str, timeout: float = 120) -> list[str]:
    """A child's stdout lines, stripped, up to and including the first that starts with ``prefix``."""
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while not lines or not lines[-1].startswith(prefix):
            line = await process.stdout.readline()
            assert line, f"the process exited: {lines}"
            lines.append(line.decode().strip())
    return lines


async def stop_child(process: asyncio.subprocess.Process, grace: float = 30) -> None:
    """SIGTERM a child process still running, and SIGKILL it if it has not exited within ``grace``."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEST_SECRETS_KEY = os.path.join(tempfile.gettempdir(), f"iot-gateway-tests-{os.getpid()}.key")


def gateway_settings(tmp_dir: str, **overrides: Any) -> config.Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_dir,
        "host": "127.0.0.1",
        "http_port": free_port(),
        "management_port": free_port(),
        "https_port": 0,
        "mqtt_port": free_port(),
        "mqtts_port": 0,
        "coap_port": free_port(socket.SOCK_DGRAM),
        "batch_max_age_ms": 2,
        "shutdown_timeout_seconds": 5.0,
        "mqtt_connect_timeout_seconds": 1.0,
        "mqtt_provision_close_seconds": 1.0,
        # The suite's clients all come from 127.0.0.1 and fail authentication on purpose: the
        # per-address and per-key limits are off here and tested on gateways of their own.
        "max_connections_per_address": 0,
        "connection_rate_per_address": 0,
        "auth_failures_per_address": 0,
        "provision_rate_per_key": 0,
        # Gateways of one test run share the database, so they share the key sealing its secrets.
        "secrets_key_file": TEST_SECRETS_KEY,
    }
    values.update(overrides)
    return config.build(values)


@asynccontextmanager
async def running_gateway(url: str, settings: config.Settings) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings, url)
    try:
        await gateway.start()
        yield gateway
    finally:
        await gateway.stop()


@dataclass(frozen=True)
class Tenant:
    project_id: str
    token: str
    product_id: str
    provision_key: str
    provision_secret: str


async def new_tenant(services: Services, strategy: str = "ALLOW_CREATE_NEW_DEVICES", **product: Any) -> Tenant:
    project = await services.projects.create_project("p-" + secrets.token_hex(6))
    token = await services.projects.create_token(project.id)
    key, secret = "key-" + secrets.token_hex(8), "secret-" + secrets.token_hex(8)
    created = await services.products.create(
        project.id, "product-" + secrets.token_hex(4), strategy=strategy, provision_key=key,
        provision_secret=secret, **product,
    )
    return Tenant(project.id, token, created.id, key, secret)


def with_settings(settings: config.Settings, **changes: Any) -> config.Settings:
    return dataclasses.replace(settings, **changes)


async def provision(http: aiohttp.ClientSession, tenant: Tenant, **extra: Any) -> tuple[str, dict[str, Any]]:
    """A device named ``mqtt-...`` claimed over HTTP: its name and the decoded answer."""
    name = "mqtt-" + secrets.token_hex(4)
    body = {"deviceName": name, "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret, **extra}
    async with http.post("/api/v1/provision", json=body) as resp:
        return name, orjson.loads(await resp.read())


async def provision_token(http: aiohttp.ClientSession, tenant: Tenant, name: str) -> str:
    """The access token of a device of this name claimed over HTTP."""
    request = {"deviceName": name, "provisionDeviceKey": tenant.provision_key,
               "provisionDeviceSecret": tenant.provision_secret}
    async with http.post("/api/v1/provision", json=request) as resp:
        return orjson.loads(await resp.read())["credentialsValue"]


async def pre_provision(gateway: Gateway, tenant: Tenant, name: str, credentials: Credentials,
                        product_id: str | None = None) -> Device:
    """A device an operator created ahead of time, its clear credentials kept until claimed."""
    device = Device(id=new_id(), project_id=tenant.project_id, product_id=product_id or tenant.product_id, name=name,
                    created_at=time.time_ns() // 1_000_000)
    stored = creds.to_stored(creds.validate(credentials), keep_pending=True)
    await gateway.services.devices.create_device(device, stored)
    return device


@dataclass(frozen=True)
class ProvisionedDevice:
    """A provisioned device as the tests use it: its access token and database id."""

    token: str
    id: str


async def provision_device(
    http: aiohttp.ClientSession, gateway: Gateway, tenant: Tenant, prefix: str = "dev-"
) -> ProvisionedDevice:
    """A device provisioned over the device API (its token not yet used)."""
    name = prefix + secrets.token_hex(6)
    body = {"deviceName": name, "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret}
    async with http.post("/api/v1/provision", json=body) as resp:
        result = orjson.loads(await resp.read())
    assert result["status"] == "SUCCESS", result
    device_id = await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE project_id = $1 AND name = $2", tenant.project_id, name)
    return ProvisionedDevice(result["credentialsValue"], device_id)
