"""ThingsBoard's claiming with ThingsBoard's own Python SDK (tb-mqtt-client, in its own virtual
environment: tests/tb_sdk_venv.py): TBDeviceMqttClient.claim, TBGatewayMqttClient.gw_claim, and
TBHTTPDevice, whose version has no claim method of its own, posting to ``claim`` as its methods
post to their endpoints. The operator then completes each claim and the device shows its customer."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import textwrap
from pathlib import Path
from typing import Any

import aiohttp

from fleetgate.app import Gateway
from tests.management_client import Management
from tests.sdk_script import TB_MQTT_PREAMBLE, running_script
from tests.support import Tenant, provision

SCRIPT_LIMIT = 120  # seconds: the script exits by itself after this, whatever it is doing

MQTT_SCRIPT = TB_MQTT_PREAMBLE + textwrap.dedent(
    """
    from tb_device_mqtt import TBDeviceMqttClient
    from tb_gateway_mqtt import TBGatewayMqttClient

    for do, command in commands():
        if do == "connect":
            kind = TBGatewayMqttClient if command["gateway"] else TBDeviceMqttClient
            client = kind(command["host"], port=command["port"], username=command["username"])
            connect(client, 7 if command["gateway"] else 4)
            emit("connected", subscribed=subscribed.wait(WAIT), is_connected=client.is_connected())
        elif do == "claim":
            emit("published", **wait_published(client.claim(command["secret_key"], command["duration"])))
        elif do == "gw_claim":
            emit("published", **wait_published(
                client.gw_claim(command["device"], command["secret_key"], command["duration"])))
        elif do == "disconnect":
            client.disconnect()
            client.stop()
            emit("disconnected")
        elif do == "exit":
            break
    """
)

HTTP_SCRIPT = textwrap.dedent(
    """
    import json, sys

    from tb_device_http import TBHTTPDevice

    host, token, secret, duration = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    device = TBHTTPDevice(host, token)
    answer = device._publish_data({"secretKey": secret, "durationMs": duration}, "claim")
    print(json.dumps({"answer": answer}))
    """
)


async def complete(api: Management, name: str, secret: str, customer: str) -> dict[str, Any]:
    reply = await api.call("POST", "/devices/claim", json={"device_name": name, "secret_key": secret,
                                                           "customer": customer})
    assert reply.status == 200, reply
    return reply.body


async def shown(api: Management, name: str) -> dict[str, Any]:
    (device,) = (await api.call("GET", "/devices", params={"device_name": name})).body["devices"]
    return device


async def test_tb_device_mqtt_client_claims(gateway: Gateway, http: aiohttp.ClientSession, api: Management,
                                            tenant: Tenant, mqtt_port: int, tb_python: Path, tmp_path: Path) -> None:
    name, result = await provision(http, tenant)
    script = tmp_path / "tb_claim_mqtt.py"
    script.write_text(MQTT_SCRIPT)
    async with running_script(tb_python, script, SCRIPT_LIMIT) as client:
        connected = await client.call("connect", "connected", host="127.0.0.1", port=mqtt_port,
                                      username=result["credentialsValue"], gateway=False)
        assert connected["is_connected"] and connected["subscribed"], client.events
        sent = await client.call("claim", "published", secret_key="sdk-secret", duration=30_000)
        assert sent == {"event": "published", "acked": True, "reasons": [0], "messages": 1}
        await client.call("disconnect", "disconnected")
        await client.finish()
    await gateway.services.claiming.settled()
    assert (await complete(api, name, "sdk-secret", "sdk-customer"))["customer"] == "sdk-customer"
    assert (await shown(api, name))["customer"] == "sdk-customer"


async def test_tb_gateway_mqtt_client_claims_for_a_sub_device(
    gateway: Gateway, http: aiohttp.ClientSession, api: Management, tenant: Tenant, mqtt_port: int,
    tb_python: Path, tmp_path: Path,
) -> None:
    _, result = await provision(http, tenant, gateway=True)
    sub = "sdk-sub-" + secrets.token_hex(3)
    script = tmp_path / "tb_claim_gateway.py"
    script.write_text(MQTT_SCRIPT)
    async with running_script(tb_python, script, SCRIPT_LIMIT) as client:
        connected = await client.call("connect", "connected", host="127.0.0.1", port=mqtt_port,
                                      username=result["credentialsValue"], gateway=True)
        assert connected["is_connected"] and connected["subscribed"], client.events
        sent = await client.call("gw_claim", "published", device=sub, secret_key="gw-secret", duration=30_000)
        assert sent["acked"] and sent["reasons"] == [0], sent
        await client.call("disconnect", "disconnected")
        await client.finish()
    await gateway.services.claiming.settled()
    assert (await complete(api, sub, "gw-secret", "gw-customer"))["customer"] == "gw-customer"


async def test_tb_http_device_claims(gateway: Gateway, http: aiohttp.ClientSession, base_url: str, api: Management,
                                     tenant: Tenant, tb_python: Path, tmp_path: Path) -> None:
    name, result = await provision(http, tenant)
    script = tmp_path / "tb_claim_http.py"
    script.write_text(HTTP_SCRIPT)
    process = await asyncio.create_subprocess_exec(
        str(tb_python), str(script), base_url, result["credentialsValue"], "http-secret", "30000",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), SCRIPT_LIMIT)
    assert process.returncode == 0, stderr.decode()
    assert json.loads(stdout.decode().splitlines()[-1]) == {"answer": {}}  # 200 with no body, as ThingsBoard
    await gateway.services.claiming.settled()
    assert (await complete(api, name, "http-secret", "http-customer"))["customer"] == "http-customer"
    assert (await shown(api, name))["customer"] == "http-customer"
