"""ThingsBoard's own HTTP provisioning sample scripts, unmodified (tests/samples/, from the
provisioning page in the seed document), driven through their prompts against the gateway."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from fleetgate.core import credentials as creds
from fleetgate.app import Gateway
from tests.support import Tenant

SAMPLES = Path(__file__).parent / "samples"
GENERATED = SAMPLES / "device_provision_example_generated.py"
TOKEN = SAMPLES / "device_provision_example_token.py"
RESPONSE_CODE_LINE = "[THINGSBOARD CLIENT] Response code from Thingsboard."

# The script's to_publish, as the gateway must type it: (key, bool_v, long_v, dbl_v, str_v, json_v).
EXPECTED_TELEMETRY = [
    ("booleanKey", True, None, None, None, None),
    ("doubleKey", None, None, 42.0, None, None),
    ("jsonKey", None, None, None, None,
     {"someNumber": 42, "someArray": [1, 2, 3], "someNestedObject": {"key": "value"}}),
    ("longKey", None, 73, None, None, None),
    ("stringKey", None, None, None, "value1", None),
]


async def run_script(script: Path, answers: list[str]) -> list[str]:
    """Run the script with the same interpreter, one answer per prompt on stdin; its output lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate("".join(a + "\n" for a in answers).encode()), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().splitlines()


def host_and_port(base_url: str) -> tuple[str, str]:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.hostname}", str(parts.port)


def received_response(lines: list[str]) -> dict[str, Any]:
    """The script prints the decoded response (a Python dict) on the line after 'Received response: '."""
    index = next(i for i, line in enumerate(lines) if line.endswith("Received response: "))
    return ast.literal_eval(lines[index + 1])


def response_code(lines: list[str]) -> str:
    return lines[lines.index(RESPONSE_CODE_LINE) + 1]


async def telemetry_rows(gateway: Gateway, device_id: str) -> list[tuple[Any, ...]]:
    rows = await gateway.services.pool.fetch(
        """SELECT k.key, t.bool_v, t.long_v, t.dbl_v, t.str_v, t.json_v
           FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key WHERE t.device_id = $1 ORDER BY k.key""",
        device_id,
    )
    return [tuple(r) for r in rows]


async def the_device(gateway: Gateway, tenant: Tenant) -> dict[str, Any]:
    (device,) = await gateway.services.pool.fetch(
        """SELECT d.id, d.name, d.product_id, c.lookup FROM devices d JOIN device_credentials c ON c.device_id = d.id
           WHERE d.project_id = $1""",
        tenant.project_id,
    )
    return dict(device)


@pytest.mark.parametrize("named", [True, False], ids=["named", "generated-name"])
async def test_sample_without_credentials(gateway, base_url, tenant, named):
    host, port = host_and_port(base_url)
    name = f"sample-{secrets.token_hex(4)}" if named else ""
    lines = await run_script(GENERATED, [host, port, tenant.provision_key, tenant.provision_secret, name])

    response = received_response(lines)
    assert response["status"] == "SUCCESS" and "SUCCESS" in "\n".join(lines)
    token = response.pop("credentialsValue")
    assert response == {"credentialsType": "ACCESS_TOKEN", "status": "SUCCESS"}
    assert re.fullmatch(r"[A-Za-z0-9]{20}", token)
    assert response_code(lines) == "200"

    device = await the_device(gateway, tenant)
    assert device["name"] == name if named else re.fullmatch(r"[A-Za-z0-9]{20}", device["name"])
    assert (device["product_id"], device["lookup"]) == (tenant.product_id, creds.token_lookup(token))
    assert await telemetry_rows(gateway, device["id"]) == EXPECTED_TELEMETRY


async def test_sample_with_a_device_access_token(gateway, base_url, tenant):
    host, port = host_and_port(base_url)
    name, token = f"sample-{secrets.token_hex(4)}", f"sample-token-{secrets.token_hex(8)}"
    lines = await run_script(TOKEN, [host, port, tenant.provision_key, tenant.provision_secret, token, name])

    assert received_response(lines) == {
        "credentialsValue": token, "credentialsType": "ACCESS_TOKEN", "status": "SUCCESS",
    }
    assert response_code(lines) == "200"
    device = await the_device(gateway, tenant)
    assert (device["name"], device["lookup"]) == (name, creds.token_lookup(token))
    assert await telemetry_rows(gateway, device["id"]) == EXPECTED_TELEMETRY


async def test_sample_with_a_wrong_secret_prints_the_error(gateway, base_url, tenant):
    host, port = host_and_port(base_url)
    lines = await run_script(GENERATED, [host, port, tenant.provision_key, "wrong-secret", "sample"])
    assert received_response(lines) == {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
    assert lines[-2:] == ["Failed to get access token from response.", "Provision data was not found!"]
    assert await gateway.services.pool.fetchval(
        "SELECT count(*) FROM devices WHERE project_id = $1", tenant.project_id) == 0


async def test_sample_with_a_taken_name_prints_the_failure(gateway, base_url, tenant):
    host, port = host_and_port(base_url)
    answers = [host, port, tenant.provision_key, tenant.provision_secret, f"sample-{secrets.token_hex(4)}"]
    await run_script(GENERATED, answers)
    lines = await run_script(GENERATED, answers)
    assert received_response(lines) == {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
    assert lines[-1] == "Failed to provision device!"


@pytest.mark.parametrize("script", [GENERATED, TOKEN], ids=["generated", "token"])
def test_the_samples_are_thingsboards_scripts(script):
    """Saved unmodified: ThingsBoard's host default and telemetry example, as valid Python."""
    source = script.read_text(encoding="utf-8")
    ast.parse(source)
    assert 'config["host"] = host if host else "https://thingsboard.cloud"' in source
    assert "response = post('%s:%i/api/v1/%s/telemetry' % (THINGSBOARD_HOST, THINGSBOARD_PORT, received_token,), " \
           "dumps(to_publish))" in source
