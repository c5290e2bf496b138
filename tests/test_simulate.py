"""``iot-gateway simulate`` as a user runs it: a child process against real gateways (HTTP, MQTT,
and MQTTS with certificates minted from a test CA the command registers itself), its JSON
report parsed and checked against the database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.support import free_port, gateway_settings, new_tenant, running_gateway
from tests.pki import self_signed

ROOT = Path(__file__).resolve().parent.parent


async def simulate(*args: str, timeout: float = 120) -> tuple[int, dict | None, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", "simulate", *args, "--json", "--quiet", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    report = orjson.loads(out) if out.strip() else None
    return process.returncode, report, err.decode()


def url(gateway, name: str) -> str:
    return next(listener.url for listener in gateway.listeners if listener.name == name)


async def rows_of(gateway, tenant) -> int:
    return await gateway.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv WHERE device_id IN (SELECT id FROM devices WHERE product_id = $1)",
        tenant.product_id)


async def test_http_fleet_provisioned_by_claim(gateway, tenant) -> None:
    code, report, err = await simulate(
        url(gateway, "http"), "--devices", "5", "--messages", "60", "--provision-key", tenant.provision_key,
        "--provision-secret", tenant.provision_secret, "--datapoints", "4", "--payload-bytes", "120")
    assert code == 0, err
    assert report["protocol"] == "http" and report["connected"] == 5 and report["provisioned"] == 5
    assert report["messages"] == 60 and report["error_count"] == 0 and report["datapoints_per_message"] == 4
    assert report["messages_per_s"] > 0 and report["provisions_per_s"] > 0 and report["connects_per_s"] > 0
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert sum(second["messages"] for second in report["timeline"]) == 60
    # Each message was stored: 60 measured plus one a device before the clock, 4 data points each.
    assert await rows_of(gateway, tenant) == (60 + 5) * 4


async def test_mqtt_fleet_with_tokens_from_a_file_at_a_rate(gateway, tenant, tmp_path) -> None:
    tokens = []
    async with aiohttp.ClientSession(url(gateway, "http")) as http:
        for i in range(4):
            async with http.post("/api/v1/provision", json={
                    "deviceName": f"file-{i}", "provisionDeviceKey": tenant.provision_key,
                    "provisionDeviceSecret": tenant.provision_secret}) as resp:
                tokens.append(orjson.loads(await resp.read())["credentialsValue"])
    (tmp_path / "tokens").write_text("# one token a line\n" + "".join(t + "\n" for t in tokens))
    code, report, err = await simulate(
        url(gateway, "mqtt"), "--tokens", str(tmp_path / "tokens"), "--devices", "4", "--rate", "20",
        "--duration", "1", "--qos", "1")
    assert code == 0, err
    assert report["protocol"] == "mqtt" and report["qos"] == 1 and report["connected"] == 4
    assert report["messages"] == 80 and report["error_count"] == 0 and report["target_rate"] == 80


async def test_mqtt_fleet_provisioned_through_the_http_api_with_a_plot(gateway, tenant, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "run.png"
    code, report, err = await simulate(
        url(gateway, "mqtt"), "--devices", "6", "--messages", "300", "--inflight", "5", "--mqtt-version", "5",
        "--provision-key", tenant.provision_key, "--provision-secret", tenant.provision_secret,
        "--provision-url", url(gateway, "http"), "--processes", "2", "--plot", str(plot))
    assert code == 0, err
    assert report["provisioned"] == 6 and report["messages"] == 300 and report["generator_processes"] == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_bad_credentials_are_counted_by_kind(gateway, tmp_path) -> None:
    (tmp_path / "tokens").write_text("nobody-1\nnobody-2\n")
    code, report, err = await simulate(url(gateway, "mqtt"), "--tokens", str(tmp_path / "tokens"),
                                       "--devices", "2", "--messages", "10")
    assert code == 1
    assert report["connected"] == 0
    assert report["errors"] == {"CONNACK refused: 0x05 not authorized": 2}


@pytest.fixture(scope="module")
async def tls_gateway(database_url, tmp_path_factory):
    directory = tmp_path_factory.mktemp("simulate-tls")
    cert, key = self_signed(directory)
    settings = gateway_settings(str(directory), mqtts_port=free_port(), tls_cert_file=cert, tls_key_file=key)
    async with running_gateway(database_url, settings) as gw:
        yield gw, cert


async def test_mqtts_fleet_auto_registered_from_a_test_ca(tls_gateway) -> None:
    gw, server_cert = tls_gateway
    tenant = await new_tenant(gw.services)
    code, report, err = await simulate(
        url(gw, "mqtts"), "--devices", "5", "--messages", "50", "--register-ca", "--cert-subject", "O=Acme",
        "--management-url", url(gw, "management"), "--project-id", tenant.project_id,
        "--project-token", tenant.token, "--product-id", tenant.product_id, "--server-ca", server_cert)
    assert code == 0, err
    assert report["protocol"] == "mqtts" and report["connected"] == 5 and report["messages"] == 50
    devices = await gw.services.pool.fetchval("SELECT count(*) FROM devices WHERE product_id = $1",
                                              tenant.product_id)
    assert devices == 5  # registered on their first connection (the first one by the trust probe)


async def test_plain_options_errors_exit_2() -> None:
    code, report, err = await simulate("ftp://127.0.0.1:1", "--tokens", "x")
    assert code == 2 and report is None and "expected" in err
    code, report, err = await simulate("mqtt://127.0.0.1:1", "--devices", "1")
    assert code == 2 and "credentials" in err


async def test_coap_fleet_provisioned_over_coap(gateway, tenant, coap_url) -> None:
    code, report, err = await simulate(
        coap_url, "--devices", "6", "--messages", "90", "--provision-key", tenant.provision_key,
        "--provision-secret", tenant.provision_secret, "--inflight", "2")
    assert code == 0, err
    assert report["protocol"] == "coap" and report["qos"] is None
    assert report["connected"] == 6 and report["provisioned"] == 6  # one UDP socket a device by default
    assert report["messages"] == 90 and report["error_count"] == 0
    assert sum(second["messages"] for second in report["timeline"]) == 90
    assert await rows_of(gateway, tenant) == (90 + 6) * 3


async def test_coap_fleet_at_a_rate_sharing_sockets_from_two_processes(gateway, tenant, coap_url) -> None:
    code, report, err = await simulate(
        coap_url, "--devices", "8", "--devices-per-socket", "2", "--rate", "10", "--duration", "1",
        "--processes", "2", "--provision-key", tenant.provision_key, "--provision-secret", tenant.provision_secret)
    assert code == 0, (err, {k: v for k, v in report.items() if k != "timeline"})
    assert report["connected"] == 4 and report["messages"] == 80 and report["target_rate"] == 80
    assert await rows_of(gateway, tenant) == (80 + 8) * 3


async def test_coap_fleet_with_wrong_credentials_says_why(gateway, tenant, coap_url, tmp_path) -> None:
    code, report, err = await simulate(coap_url, "--devices", "3", "--provision-key", tenant.provision_key,
                                       "--provision-secret", "wrong")
    assert code == 1 and report is None
    assert "no device could be provisioned: {'coap 4.00 NOT_FOUND': 3}" in err
    (tmp_path / "tokens").write_text("nobody-1\nnobody-2\n")
    code, report, err = await simulate(coap_url, "--tokens", str(tmp_path / "tokens"), "--devices", "2",
                                       "--messages", "10")
    assert code == 1 and report["messages"] == 0
    assert report["errors"] == {"CoAP 4.01": 12}  # each device's first request, then the 10
