"""The device API over TLS: the https listener with the configured certificate, TLS 1.2 at least."""

from __future__ import annotations

import ssl

import aiohttp
import orjson
import pytest

from tests.pki import self_signed
from tests.support import free_port, gateway_settings, new_tenant, running_gateway


@pytest.fixture
async def tls_gateway(database_url, tmp_path):
    cert, key = self_signed(tmp_path)
    settings = gateway_settings(str(tmp_path), https_port=free_port(), tls_cert_file=cert, tls_key_file=key)
    async with running_gateway(database_url, settings) as gw:
        yield gw, cert


async def test_telemetry_over_https(tls_gateway) -> None:
    gw, cert = tls_gateway
    url = next(listener.url for listener in gw.listeners if listener.name == "https")
    assert url.startswith("https://127.0.0.1:")
    tenant = await new_tenant(gw.services)
    context = ssl.create_default_context(cafile=cert)
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=context)) as https:
        request = {"deviceName": "tls-device", "provisionDeviceKey": tenant.provision_key,
                   "provisionDeviceSecret": tenant.provision_secret}
        async with https.post("/api/v1/provision", json=request) as resp:
            token = orjson.loads(await resp.read())["credentialsValue"]
        async with https.post(f"/api/v1/{token}/telemetry", data=b'{"t":1}') as resp:
            assert resp.status == 200


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_below_1_2_is_refused(tls_gateway) -> None:
    gw, cert = tls_gateway
    url = next(listener.url for listener in gw.listeners if listener.name == "https")
    context = ssl.create_default_context(cafile=cert)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=context)) as https:
        with pytest.raises(aiohttp.ClientConnectorError):
            await https.post("/api/v1/x/telemetry", data=b"{}")
