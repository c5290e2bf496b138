"""ThingsBoard's Python device SDK (tb-mqtt-client's TBHTTPDevice) against the gateway.

The SDK lives in its own virtual environment (tests/tb_sdk_venv.py) because its
tb-paho-mqtt-client conflicts with paho-mqtt; each test runs a small script there.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import textwrap
from pathlib import Path
from typing import Any

import pytest

from fleetgate.core import credentials as creds
from fleetgate.app import Gateway
from fleetgate.core.model import Credentials, CredentialsType
from fleetgate.core.telemetry_model import AttributeScope, KeyValue, ValueType
from tests import tb_sdk_venv
from tests.support import Tenant, new_tenant, pre_provision

# 2024-01-02T03:04:05 as the SDK turns a naive datetime into Unix milliseconds (read as UTC).
SDK_TS = 1704164645000

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime

    from tb_device_http import TBHTTPDevice, TBProvisionFailure

    mode, host = sys.argv[1], sys.argv[2]
    out = {}
    if mode == "provision":
        name, key, secret = sys.argv[3:6]
        device = TBHTTPDevice.provision(host, name, key, secret)
        out["token"], out["name"] = device.token, device.name
        out["connected"] = device.connect()  # POSTs {} to telemetry, starts the publish worker
        device.send_telemetry({"temperature": 21.5, "humidity": 40, "status": "ok", "on": True},
                              timestamp=datetime(2024, 1, 2, 3, 4, 5), queued=False)
        device.send_telemetry({"queued": 7})  # the SDK's default: through its worker thread
        device._TBHTTPDevice__worker["publish"]["queue"].join()
        device.send_attributes({"firmware": "1.0.3", "serial": 1234, "calibrated": False, "config": {"a": [1]}})
        try:
            TBHTTPDevice.provision(host, name, key, secret)
        except TBProvisionFailure as failure:
            out["again"] = failure.args[0]
        try:
            TBHTTPDevice.provision(host, name + "-x", key, "wrong-" + secret)
        except TBProvisionFailure as failure:
            out["wrong_secret"] = failure.args[0]
    else:
        device = TBHTTPDevice(host, sys.argv[3])
        out["all"] = device.request_attributes()
        out["client"] = device.request_attributes(client_keys=["firmware", "serial"])
        out["one_client"] = device.request_attributes(client_keys=["calibrated"])
        out["shared"] = device.request_attributes(shared_keys=["target", "mode"])
        out["both"] = device.request_attributes(client_keys=["config"], shared_keys=["target"])
        out["unknown_token"] = TBHTTPDevice(host, "no-such-token").test_connection()
    print(json.dumps(out))
    """
)


@pytest.fixture
def sdk_script(tmp_path: Path) -> Path:
    script = tmp_path / "tb_sdk_client.py"
    script.write_text(SCRIPT)
    return script


async def run_sdk(tb_python: Path, script: Path, *args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        str(tb_python), str(script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout.decode().splitlines()[-1])


async def device_row(gateway: Gateway, tenant: Tenant, name: str) -> dict[str, Any]:
    row = await gateway.services.pool.fetchrow(
        "SELECT d.id, d.product_id, c.lookup FROM devices d JOIN device_credentials c ON c.device_id = d.id "
        "WHERE d.project_id = $1 AND d.name = $2",
        tenant.project_id, name,
    )
    assert row is not None
    return dict(row)


def sdk_version() -> str:
    (dist,) = tb_sdk_venv.VENV.site_packages().glob("tb_mqtt_client-*.dist-info")
    return dist.name.removeprefix("tb_mqtt_client-").removesuffix(".dist-info")


def test_the_pinned_sdk_is_installed(tb_python):  # the environment is built by then
    assert f"tb-mqtt-client=={sdk_version()}" in tb_sdk_venv.REQUIREMENTS


async def test_sdk_provision_telemetry_attributes(gateway, base_url, tenant, tb_python, sdk_script):
    name = f"sdk-{secrets.token_hex(4)}"
    out = await run_sdk(tb_python, sdk_script, "provision", base_url, name, tenant.provision_key,
                        tenant.provision_secret)

    # provision() returned a device with the generated token; connect() accepted the empty telemetry.
    token = out["token"]
    assert len(token) == 20 and token.isalnum()
    assert (out["name"], out["connected"]) == (name, True)
    assert out["again"] == {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
    assert out["wrong_secret"] == {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}

    device = await device_row(gateway, tenant, name)
    assert (device["product_id"], device["lookup"]) == (tenant.product_id, creds.token_lookup(token))
    pool = gateway.services.pool
    telemetry = await pool.fetch(
        """SELECT k.key, t.ts, t.bool_v, t.long_v, t.dbl_v, t.str_v FROM ts_kv t
           JOIN key_dictionary k ON k.key_id = t.key WHERE t.device_id = $1 ORDER BY k.key""",
        device["id"],
    )
    assert [tuple(r) for r in telemetry if r["key"] != "queued"] == [
        ("humidity", SDK_TS, None, 40, None, None),
        ("on", SDK_TS, True, None, None, None),
        ("status", SDK_TS, None, None, None, "ok"),
        ("temperature", SDK_TS, None, None, 21.5, None),
    ]
    (queued,) = [r for r in telemetry if r["key"] == "queued"]
    assert queued["long_v"] == 7 and queued["ts"] > SDK_TS
    attributes = await pool.fetch(
        "SELECT key, bool_v, long_v, str_v, json_v FROM attribute_kv WHERE device_id = $1 AND scope = 'CLIENT_SCOPE' "
        "ORDER BY key",
        device["id"],
    )
    assert [tuple(r) for r in attributes] == [
        ("calibrated", False, None, None, None),
        ("config", None, None, None, {"a": [1]}),
        ("firmware", None, None, "1.0.3", None),
        ("serial", None, 1234, None, None),
    ]

    # Shared attributes come from the server side; then the SDK reads both scopes back.
    await gateway.services.attributes.write_attributes(
        device["id"], AttributeScope.SHARED, SDK_TS,
        [KeyValue("target", ValueType.DOUBLE, 22.5), KeyValue("mode", ValueType.STRING, "eco")],
    )
    read = await run_sdk(tb_python, sdk_script, "attributes", base_url, token)
    client = {"calibrated": False, "config": {"a": [1]}, "firmware": "1.0.3", "serial": 1234}
    assert read["all"] == {"client": client, "shared": {"mode": "eco", "target": 22.5}}
    assert read["unknown_token"] is False
    # The SDK sends client_keys/shared_keys (snake case), one repeated parameter per key.
    assert read["one_client"] == {"client": {"calibrated": False}}
    assert read["both"] == {"client": {"config": {"a": [1]}}, "shared": {"target": 22.5}}
    assert read["client"] == {"client": {"firmware": "1.0.3", "serial": 1234}}
    assert read["shared"] == {"shared": {"mode": "eco", "target": 22.5}}


async def test_sdk_provision_under_check_pre_provisioned(gateway, base_url, tb_python, sdk_script):
    """TBHTTPDevice.provision works the same against a CHECK_PRE product with an operator's device."""
    tenant = await new_tenant(gateway.services, strategy="CHECK_PRE_PROVISIONED_DEVICES")
    name, token = f"sdk-pre-{secrets.token_hex(4)}", f"pre-{secrets.token_hex(8)}"
    await pre_provision(gateway, tenant, name, Credentials(CredentialsType.ACCESS_TOKEN, token))
    out = await run_sdk(tb_python, sdk_script, "provision", base_url, name, tenant.provision_key,
                        tenant.provision_secret)
    assert (out["token"], out["connected"]) == (token, True)
    assert out["again"] == {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
