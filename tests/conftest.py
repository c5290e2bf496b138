"""Shared fixtures: one real PostgreSQL for the session and a gateway on free ports.

The database is the embedded server (the product's own default) unless
GATEWAY_TEST_DATABASE_URL names another; each test makes its own project, so
tests share the database without seeing each other's rows.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fleetgate.app import Gateway
from fleetgate.storage import embedded
from tests.management_client import Management
from tests.paho_async import AsyncPaho
from tests.pki import self_signed
from tests import tb_sdk_venv
from tests.support import Tenant, free_port, gateway_settings, new_tenant, running_gateway


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("GATEWAY_TEST_DATABASE_URL") or embedded.start(tmp_path_factory.mktemp("pg"))


@pytest.fixture(scope="session")
async def gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    settings = gateway_settings(str(tmp_path_factory.mktemp("gateway")))
    async with running_gateway(database_url, settings) as running:
        yield running


def listener_url(gateway: Gateway, name: str) -> str:
    return next(listener.url for listener in gateway.listeners if listener.name == name)


@pytest.fixture(scope="session")
def base_url(gateway: Gateway) -> str:
    """The device API."""
    return listener_url(gateway, "http")


@pytest.fixture(scope="session")
def management_url(gateway: Gateway) -> str:
    return listener_url(gateway, "management")


@pytest.fixture(scope="session")
def mqtt_port(gateway: Gateway) -> int:
    return int(listener_url(gateway, "mqtt").rsplit(":", 1)[1])


@pytest.fixture(scope="session")
def coap_url(gateway: Gateway) -> str:
    """The CoAP device API, coap://127.0.0.1:port."""
    return listener_url(gateway, "coap")


@pytest.fixture
async def tenant(gateway: Gateway) -> Tenant:
    return await new_tenant(gateway.services)


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the device API."""
    async with aiohttp.ClientSession(base_url) as session:
        yield session


@pytest.fixture
async def management(management_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the management API."""
    async with aiohttp.ClientSession(management_url) as session:
        yield session


@pytest.fixture
def api(management: aiohttp.ClientSession, tenant: Tenant) -> Management:
    """The management API, scoped to the test's tenant."""
    return Management(management, tenant)


@pytest.fixture(scope="module")
async def tls(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Gateway, str]]:
    """A gateway of the module's own with MQTTS and HTTPS listeners: it and its server certificate (a file)."""
    directory = tmp_path_factory.mktemp("autoreg")
    cert, key = self_signed(directory)
    settings = gateway_settings(str(directory), mqtts_port=free_port(), https_port=free_port(),
                                tls_cert_file=cert, tls_key_file=key)
    async with running_gateway(database_url, settings) as gw:
        yield gw, cert


@pytest.fixture
async def tls_api(tls: tuple[Gateway, str]) -> AsyncIterator[Management]:
    """The management API of the ``tls`` gateway, for a tenant of the test's own."""
    gw, _ = tls
    tenant = await new_tenant(gw.services)
    async with aiohttp.ClientSession(listener_url(gw, "management")) as http:
        yield Management(http, tenant)


@pytest.fixture(scope="session")
async def tb_python() -> Path:
    """The interpreter of ThingsBoard's Python SDK (tb-mqtt-client) in its own environment, built
    once and cached across runs (tests/tb_sdk_venv.py), without blocking the loop."""
    return await tb_sdk_venv.ensure()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., AsyncPaho]]:
    """Makes paho-mqtt clients (tests/paho_async.py); each is closed at the end of the test."""
    made: list[AsyncPaho] = []

    def make(*args: Any, **kwargs: Any) -> AsyncPaho:
        made.append(AsyncPaho(*args, **kwargs))
        return made[-1]

    yield make
    for client in made:
        await client.close()
