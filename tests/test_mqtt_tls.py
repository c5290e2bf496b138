"""MQTT over TLS (8883), driven by mosquitto_pub: X.509 client certificates as credentials,
access tokens without a certificate, unknown certificates refused."""

from __future__ import annotations

import secrets

import aiohttp
import orjson
import pytest

from fleetgate.core.credentials import certificate_lookup, trim_certificate
from tests.cli_clients import mosquitto_pub
from tests.pki import self_signed
from tests.support import free_port, gateway_settings, new_tenant, running_gateway


@pytest.fixture(scope="module")
async def tls_gateway(database_url, tmp_path_factory):
    directory = tmp_path_factory.mktemp("mqtts")
    cert, key = self_signed(directory)
    settings = gateway_settings(str(directory), mqtts_port=free_port(), tls_cert_file=cert, tls_key_file=key)
    async with running_gateway(database_url, settings) as gw:
        yield gw, cert


def url_of(gw, name: str) -> str:
    return next(listener.url for listener in gw.listeners if listener.name == name)


async def provision(gw, tenant, **fields) -> dict:
    async with aiohttp.ClientSession(url_of(gw, "http")) as http:
        async with http.post("/api/v1/provision", json={
            "deviceName": "tls-" + secrets.token_hex(4), "provisionDeviceKey": tenant.provision_key,
            "provisionDeviceSecret": tenant.provision_secret, **fields}) as resp:
            return orjson.loads(await resp.read())


async def rows_for_lookup(gw, lookup: str) -> int:
    return await gw.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv t JOIN device_credentials c ON c.device_id = t.device_id WHERE c.lookup = $1",
        lookup)


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
async def test_a_certificate_provisioned_while_running_authenticates_its_device(tls_gateway, tmp_path,
                                                                                 version) -> None:
    gw, server_cert = tls_gateway
    tenant = await new_tenant(gw.services)
    cert, key = self_signed(tmp_path)
    pem = open(cert).read()
    result = await provision(gw, tenant, credentialsType="X509_CERTIFICATE", hash=pem)
    assert result["status"] == "SUCCESS"
    # PostgreSQL notifies the gateway, which reloads its trust anchors: no restart. The
    # reload is asynchronous, so the device, like a real one, tries again until it is in.
    for _ in range(20):
        code, out = await mosquitto_pub(gw, server_cert, "--cert", cert, "--key", key, "-V", version)
        if code == 0:
            break
    assert code == 0, out
    assert await rows_for_lookup(gw, certificate_lookup(trim_certificate(pem))) == 1


async def test_tokens_work_over_tls_without_a_certificate(tls_gateway) -> None:
    gw, server_cert = tls_gateway
    tenant = await new_tenant(gw.services)
    token = (await provision(gw, tenant))["credentialsValue"]
    code, out = await mosquitto_pub(gw, server_cert, "-u", token, "-V", "mqttv5")
    assert code == 0, out


async def test_an_unknown_certificate_is_refused(tls_gateway, tmp_path) -> None:
    gw, server_cert = tls_gateway
    cert, key = self_signed(tmp_path)
    code, _ = await mosquitto_pub(gw, server_cert, "--cert", cert, "--key", key)
    assert code != 0
