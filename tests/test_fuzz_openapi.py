"""schemathesis against the running gateway's /openapi.json: the management API (with a real
project's token and id) and the device API (with a real device's token), bounded by examples
per operation and time. Checks: no 5xx, the status, content type and body the document
declares for each response. The command's summary (operations, cases) is printed."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import sys
from pathlib import Path

import orjson
import pytest

from fuzz.summary import report
from tests import pki
from tests.management_client import Management
from tests.support import Tenant
from tests.template_bodies import body as template_body

EXAMPLES = int(os.environ.get("FUZZ_OPENAPI_EXAMPLES", "30"))
SECONDS = int(os.environ.get("FUZZ_SECONDS", "20"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SCHEMATHESIS = shutil.which("schemathesis") or shutil.which("st")


async def schemathesis(config: Path, schema_url: str, *options: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        SCHEMATHESIS or sys.executable, "--config-file", str(config), "run", schema_url, "--checks", CHECKS,
        "--max-examples", str(EXAMPLES), "--max-time", str(SECONDS), "--generation-database", "none",
        "--workers", "1", "--no-color", "--output-truncate", "true", *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=config.parent,
    )
    try:
        async with asyncio.timeout(SECONDS * 4 + 120):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, out.decode(errors="replace")


def summary(out: str) -> str:
    """"34 operations, 1069 cases: 1069 generated, 1069 passed (seed ...)", from the command's report."""
    operations = re.search(r"Operations:\s+(\d+) selected", out)
    cases = re.search(r"Test cases:\s*\n\s*(.+)", out)
    seed = re.search(r"Seed: (\d+)", out)
    total = re.match(r"(\d+) generated", cases.group(1).strip()) if cases else None
    return (f"{operations.group(1) if operations else '?'} operations, {total.group(1) if total else '?'} cases: "
            f"{cases.group(1).strip() if cases else '?'} (seed {seed.group(1) if seed else '?'})")


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (the dev extra installs it)")
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    gateway, management_url, base_url, tenant: Tenant, http, management, tmp_path, pytestconfig
) -> None:
    management_client = management
    name = "st-" + secrets.token_hex(4)
    async with http.post("/api/v1/provision", json={
        "deviceName": name, "provisionDeviceKey": tenant.provision_key,
        "provisionDeviceSecret": tenant.provision_secret}) as resp:
        device_token = orjson.loads(await resp.read())["credentialsValue"]
    async with http.post(f"/api/v1/{device_token}/telemetry", json={"temperature": 21.5}) as resp:
        assert resp.status == 200
    # Real resources for the path parameters, so operations reach their logic rather than 404.
    api = Management(management_client, tenant)
    device_id = (await api.call("GET", "/devices", params={"device_name": name})).body["devices"][0]["device_id"]
    template = await api.call("POST", "/provisioning-templates", json=template_body("st", product_id=tenant.product_id))
    certificate = await api.call("POST", "/certificates", json={"content": pki.ca("st " + tenant.project_id).pem})
    ids = {"project_id": tenant.project_id, "product_id": tenant.product_id, "device_id": device_id,
           "template_id": template.body["template_id"], "certificate_id": certificate.body["certificate_id"],
           "key": "temperature"}
    management = tmp_path / "management.toml"
    management.write_text(
        f'headers = {{ "X-Auth-Token" = "{tenant.token}" }}\n[parameters]\n'
        + "".join(f'"path.{name}" = "{value}"\n' for name, value in ids.items())
    )
    # The device API's {token} is pinned to the real device's through the document itself (an enum
    # of one): positive cases reach the handlers, negative ones try every other token.
    async with http.get(f"{management_url}/openapi.json") as resp:
        document = orjson.loads(await resp.read())
    # Another device than the management run's, which that run may delete.
    async with http.post("/api/v1/provision", json={
        "deviceName": name + "-d", "provisionDeviceKey": tenant.provision_key,
        "provisionDeviceSecret": tenant.provision_secret}) as resp:
        device_token = orjson.loads(await resp.read())["credentialsValue"]
    document["components"]["parameters"]["token"]["schema"] = {"type": "string", "enum": [device_token]}
    # The long polls wait up to a minute by design, longer than a generated case may take, and a
    # case for another method of the same path (schemathesis tries GET on POST /rpc) is one:
    # tests/test_http_long_polls.py covers their answers and refusals.
    del document["paths"]["/api/v1/{token}/rpc"]
    del document["paths"]["/api/v1/{token}/attributes/updates"]
    device_schema = tmp_path / "device-openapi.json"
    device_schema.write_bytes(orjson.dumps(document))
    device = tmp_path / "device.toml"
    device.write_text("")
    runs = await asyncio.gather(
        schemathesis(management, f"{management_url}/openapi.json", "--url", management_url,
                     "--exclude-tag", "Device API"),
        schemathesis(device, str(device_schema), "--url", base_url, "--include-tag", "Device API"),
    )
    for name, (code, out) in zip(("management API", "device API"), runs):
        report(pytestconfig, f"schemathesis {name}: {summary(out)}")
        assert code == 0, f"schemathesis found problems in the {name}:\n{out[-12000:]}"
        if os.environ.get("FUZZ_VERBOSE"):
            print(out)
