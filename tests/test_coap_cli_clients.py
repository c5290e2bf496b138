"""The CoAP transport driven by command-line clients: aiocoap's ``aiocoap-client`` and libcoap's
``coap-client-notls`` (Debian libcoap3-bin), each a real process speaking UDP to the gateway."""

from __future__ import annotations

import asyncio
import secrets
import shutil

import orjson
import pytest

from tests.cli_clients import read_until, run, started
from tests.coap_support import device_id_of
from tests.support import Tenant
from tests.telemetry_support import key_rows, stored

LIBCOAP = shutil.which("coap-client-notls")
needs_libcoap = pytest.mark.skipif(LIBCOAP is None, reason="coap-client-notls (Debian libcoap3-bin) is not installed")


def provision_body(tenant: Tenant, name: str) -> str:
    return orjson.dumps({"deviceName": name, "provisionDeviceKey": tenant.provision_key,
                         "provisionDeviceSecret": tenant.provision_secret}).decode()


async def set_shared(management, tenant: Tenant, device_id: str, values: dict) -> None:
    async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/attributes",
                               params={"scope": "SHARED_SCOPE"}, json=values,
                               headers={"X-Auth-Token": tenant.token}) as resp:
        assert resp.status == 200


# aiocoap-client


async def test_aiocoap_client_provisions_and_sends_telemetry(gateway, coap_url, tenant) -> None:
    name = "aiocoap-cli-" + secrets.token_hex(3)
    code, output = await run("aiocoap-client", "-m", "POST", "--payload", provision_body(tenant, name),
                             f"{coap_url}/api/v1/provision")
    assert code == 0, output
    answer = orjson.loads(output.strip().splitlines()[-1])
    assert answer["status"] == "SUCCESS"
    token = answer["credentialsValue"]

    code, output = await run("aiocoap-client", "-m", "POST", "--payload", '{"cli":1}',
                             f"{coap_url}/api/v1/{token}/telemetry")
    assert code == 0, output
    assert (await stored(gateway, tenant, name))["cli"] == "1"
    code, output = await run("aiocoap-client", "--non", "-m", "POST", "--payload", '{"cli_non":2}',
                             f"{coap_url}/api/v1/{token}/telemetry")
    assert code == 0, output
    assert (await stored(gateway, tenant, name))["cli_non"] == "2"

    code, output = await run("aiocoap-client", "-m", "POST", "--payload", '{"x":',
                             f"{coap_url}/api/v1/{token}/telemetry")
    assert "4.00" in output
    code, output = await run("aiocoap-client", "-m", "POST", "--payload", "{}", f"{coap_url}/api/v1/nope/telemetry")
    assert "4.01" in output
    code, output = await run("aiocoap-client", f"{coap_url}/api/v1/{token}/nothing")
    assert "4.04" in output


async def test_aiocoap_client_block1_rpc_and_attributes(gateway, coap_url, tenant, tmp_path) -> None:
    name = "aiocoap-cli-blocks-" + secrets.token_hex(3)
    code, output = await run("aiocoap-client", "-m", "POST", "--payload", provision_body(tenant, name),
                             f"{coap_url}/api/v1/provision")
    token = orjson.loads(output.strip().splitlines()[-1])["credentialsValue"]

    # A file payload over one block is sent with Block1 (256-byte blocks: SZX 4).
    within = tmp_path / "within.json"
    within.write_bytes(orjson.dumps({f"a{i:03d}": i for i in range(300)}))
    code, output = await run("aiocoap-client", "-m", "POST", "--payload-initial-szx", "4", "--payload", f"@{within}",
                             f"{coap_url}/api/v1/{token}/telemetry")
    assert code == 0, output
    values = await stored(gateway, tenant, name)
    assert len(values) == 300 and values["a299"] == "299"

    over = tmp_path / "over.json"
    over.write_bytes(orjson.dumps({"big": "y" * 70_000}))
    code, output = await run("aiocoap-client", "-m", "POST", "--payload", f"@{over}",
                             f"{coap_url}/api/v1/{token}/telemetry")
    assert "4.13" in output, output
    assert await key_rows(gateway, tenant, name, "big") == 0

    # Client-side RPC, answered by the gateway itself.
    code, output = await run("aiocoap-client", "-m", "POST", "--payload", '{"method":"getSessionLimits","params":{}}',
                             f"{coap_url}/api/v1/{token}/rpc")
    assert code == 0, output
    assert "maxPayloadSize" in orjson.loads(output.strip().splitlines()[-1])

    code, output = await run("aiocoap-client", "-m", "POST", "--payload", '{"fw":"1.2"}',
                             f"{coap_url}/api/v1/{token}/attributes")
    assert code == 0, output
    code, output = await run("aiocoap-client", f"{coap_url}/api/v1/{token}/attributes?clientKeys=fw")
    assert code == 0, output
    assert orjson.loads(output.strip().splitlines()[-1]) == {"client": {"fw": 1.2}}  # type cast, as ThingsBoard


# Not tested: aiocoap-client 0.4.17's --observe. Its main() cancels the observation as soon as the
# first response is in (the ``finally`` after ``await requester.response``), so later notifications,
# though acknowledged by its library, are never printed. aiocoap's client API (test_coap_device.py)
# and coap-client-notls (below) cover Observe.


# libcoap's coap-client-notls


@needs_libcoap
async def test_libcoap_provisioning_telemetry_and_non(gateway, coap_url, tenant) -> None:
    name = "libcoap-" + secrets.token_hex(3)
    code, output = await run(LIBCOAP, "-m", "post", "-e", provision_body(tenant, name), f"{coap_url}/api/v1/provision")
    assert code == 0, output
    answer = orjson.loads(output.strip())
    assert answer["status"] == "SUCCESS"
    token = answer["credentialsValue"]

    code, output = await run(LIBCOAP, "-m", "post", "-e", '{"lib":1}', f"{coap_url}/api/v1/{token}/telemetry")
    assert code == 0, output
    assert (await stored(gateway, tenant, name))["lib"] == "1"
    code, output = await run(LIBCOAP, "-N", "-m", "post", "-e", '{"lib_non":2}',
                             f"{coap_url}/api/v1/{token}/telemetry")
    assert code == 0, output
    assert (await stored(gateway, tenant, name))["lib_non"] == "2"

    code, output = await run(LIBCOAP, "-m", "post", "-e", "[1]", f"{coap_url}/api/v1/{token}/attributes")
    assert "4.00" in output
    code, output = await run(LIBCOAP, "-m", "post", "-e", "{}", f"{coap_url}/api/v1/no-such/telemetry")
    assert "4.01" in output

    code, output = await run(LIBCOAP, "-m", "get", f"{coap_url}/api/v1/{token}/attributes?clientKeys=none")
    assert code == 0, output
    assert orjson.loads(output.strip() or "{}") == {}


@needs_libcoap
async def test_libcoap_block1_upload_within_and_over_the_limit(gateway, coap_url, tenant, tmp_path) -> None:
    name = "libcoap-blocks-" + secrets.token_hex(3)
    code, output = await run(LIBCOAP, "-m", "post", "-e", provision_body(tenant, name), f"{coap_url}/api/v1/provision")
    token = orjson.loads(output.strip())["credentialsValue"]

    within = tmp_path / "within.json"
    within.write_bytes(orjson.dumps({"ts": 1767225600000, "values": {f"b{i:03d}": i for i in range(300)}}))
    assert within.stat().st_size > 3000
    code, output = await run(LIBCOAP, "-m", "post", "-b", "256", "-f", str(within), f"{coap_url}/api/v1/{token}/telemetry")
    assert code == 0, output
    values = await stored(gateway, tenant, name)
    assert len(values) == 300 and values["b299"] == "299"

    over = tmp_path / "over.json"
    over.write_bytes(orjson.dumps({"big": "y" * 70_000}))
    code, output = await run(LIBCOAP, "-m", "post", "-b", "1024", "-f", str(over), f"{coap_url}/api/v1/{token}/telemetry")
    assert "4.13" in output, output
    assert await key_rows(gateway, tenant, name, "big") == 0


@needs_libcoap
async def test_libcoap_observes_attributes_and_rpc_then_deregisters(gateway, management, coap_url, tenant) -> None:
    name = "libcoap-obs-" + secrets.token_hex(3)
    code, output = await run(LIBCOAP, "-m", "post", "-e", provision_body(tenant, name), f"{coap_url}/api/v1/provision")
    token = orjson.loads(output.strip())["credentialsValue"]
    device_id = await device_id_of(gateway, tenant, name)

    async with started(LIBCOAP, "-w", "-s", "3", f"{coap_url}/api/v1/{token}/attributes") as cli:
        await read_until(cli, "{}")
        await set_shared(management, tenant, device_id, {"libobs": "on"})
        await read_until(cli, '{"libobs":"on"}')
        async with asyncio.timeout(15):
            await cli.wait()
    # At the end of its -s duration, coap-client deregisters (a GET with Observe=1, or a Reset).
    assert not gateway._coap.site.observing(device_id)

    async with started(LIBCOAP, "-w", "-s", "5", f"{coap_url}/api/v1/{token}/rpc") as cli:
        # The first response is empty, which coap-client does not print: until the observation is
        # registered, each check waits for a request's round trip (not a sleep).
        async with asyncio.timeout(10):
            while not gateway._coap.site.observing(device_id):
                await run(LIBCOAP, "-m", "get", f"{coap_url}/api/v1/{token}/attributes")

        async def operator_call():
            async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands",
                                       json={"method": "blink", "params": {"n": 2}, "timeout": 5000},
                                       headers={"X-Auth-Token": tenant.token}) as resp:
                return resp.status, orjson.loads(await resp.read())

        call = asyncio.ensure_future(operator_call())
        lines = await read_until(cli, '"blink"')
        pushed = orjson.loads(lines[-1])
        assert pushed["params"] == {"n": 2}
        code, output = await run(LIBCOAP, "-m", "post", "-e", '{"ok":true}',
                                 f"{coap_url}/api/v1/{token}/rpc/{pushed['id']}")
        assert code == 0, output
        assert await call == (200, {"response": {"ok": True}})
