"""OTA updates with ThingsBoard's own Python SDK (tb-mqtt-client, in its own virtual environment:
tests/tb_sdk_venv.py), unchanged: TBDeviceMqttClient.get_firmware_update downloads an operator's
package in chunks over MQTT, verifies its checksum and reports fw_state up to UPDATED, which the
management API then shows; TBHTTPDevice.get_firmware_update does the same over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import aiohttp

from fleetgate.app import Gateway
from tests.management_client import Management
from tests.sdk_script import TB_MQTT_PREAMBLE, running_script
from tests.support import Tenant, provision_device

SCRIPT_LIMIT = 120  # seconds: the script exits by itself after this, whatever it is doing
# 100,000 bytes whose checksums have no leading zero byte: the SDK compares CRC32 and MurmurHash3
# checksums as hex without leading zeros, where ThingsBoard (and this gateway) write every byte.
IMAGE = b"".join(hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(3125))

MQTT_SCRIPT = TB_MQTT_PREAMBLE + textwrap.dedent(
    """
    from tb_device_mqtt import TBDeviceMqttClient

    for do, command in commands():
        if do == "connect":
            client = TBDeviceMqttClient(command["host"], port=command["port"], username=command["username"],
                                        chunk_size=command["chunk_size"])
            connect(client, 4)
            emit("connected", subscribed=subscribed.wait(WAIT), is_connected=client.is_connected())
            original_send = client.send_telemetry

            def send_telemetry(telemetry, *args, **kwargs):  # each fw_state report, as the SDK sends it
                info = original_send(telemetry, *args, **kwargs)
                state = telemetry.get("fw_state")
                if state == "UPDATED":  # sent from the SDK's service thread: its PUBACK can be awaited
                    emit("fw_UPDATED", telemetry=telemetry, **wait_published(info))
                elif state:
                    emit("fw_" + state, telemetry=telemetry)
                return info

            client.send_telemetry = send_telemetry
        elif do == "get_firmware_update":
            client.get_firmware_update()
            emit("requested")
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

    host, token, chunk_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    device = TBHTTPDevice(host, token, chunk_size=chunk_size)
    sent = []
    original_send = device.send_telemetry

    def send_telemetry(telemetry, timestamp=None, queued=True):
        # The SDK's publish worker thread would post the same request; posted here, so that the
        # script ends once every report is answered.
        sent.append(dict(telemetry))
        return original_send(telemetry, timestamp, queued=False)

    device.send_telemetry = send_telemetry
    device.get_firmware_update()
    with open(sys.argv[4], "rb") as written:  # the SDK writes the firmware under its title
        print(json.dumps({"sent": sent, "size": len(written.read())}))
    """
)


async def assign(api: Management, device_id: str, title: str, **params: str) -> dict[str, Any]:
    created = await api.call("POST", "/ota-upgrades/packages", data=IMAGE,
                             params={"type": "FIRMWARE", "title": title, "version": "2.0", **params})
    assert created.status == 201, created
    package = created.body
    assigned = await api.call("PUT", f"/devices/{device_id}/ota-packages/FIRMWARE",
                              json={"package_id": package["package_id"]})
    assert assigned.status == 200, assigned
    return package


async def shown_progress(api: Management, gateway: Gateway, device_id: str, package_id: str) -> dict[str, Any]:
    await gateway.ota_progress.settled()
    counts = (await api.call("GET", f"/ota-upgrades/packages/{package_id}")).body["device_states"]
    assert counts == {"UPDATED": 1}, counts
    return (await api.call("GET", f"/devices/{device_id}/ota")).body["firmware"]


async def test_tb_device_mqtt_client_gets_its_firmware(
    gateway: Gateway, http: aiohttp.ClientSession, api: Management, tenant: Tenant, mqtt_port: int,
    tb_python: Path, tmp_path: Path,
) -> None:
    device = await provision_device(http, gateway, tenant)
    package = await assign(api, device.id, "sdk-mqtt.bin")
    script = tmp_path / "tb_ota_mqtt.py"
    script.write_text(MQTT_SCRIPT)
    async with running_script(tb_python, script, SCRIPT_LIMIT, cwd=tmp_path) as client:
        connected = await client.call("connect", "connected", host="127.0.0.1", port=mqtt_port,
                                      username=device.token, chunk_size=16_384)
        assert connected["is_connected"] and connected["subscribed"], client.events
        await client.call("get_firmware_update", "requested")
        for state in ("DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING"):
            await client.event("fw_" + state)
        updated = await client.event("fw_UPDATED")
        assert updated["acked"] and updated["reasons"] == [0], updated
        assert updated["telemetry"]["current_fw_version"] == "2.0"
        await client.call("disconnect", "disconnected")
        log = await client.finish()
    assert not any(e["event"] == "fw_FAILED" for e in client.events), log
    assert "Checksum verified" in log
    assert (tmp_path / "sdk-mqtt.bin").read_bytes() == IMAGE  # the SDK keeps what it downloaded
    firmware = await shown_progress(api, gateway, device.id, package["package_id"])
    assert firmware["state"] == "UPDATED" and firmware["current_fw_title"] == "sdk-mqtt.bin"
    assert firmware["current_fw_version"] == "2.0" and firmware["error"] == ""


async def test_tb_http_device_gets_its_firmware(
    gateway: Gateway, http: aiohttp.ClientSession, base_url: str, api: Management, tenant: Tenant,
    tb_python: Path, tmp_path: Path,
) -> None:
    device = await provision_device(http, gateway, tenant)
    package = await assign(api, device.id, "sdk-http.bin", checksum_algorithm="MURMUR3_128")
    script = tmp_path / "tb_ota_http.py"
    script.write_text(HTTP_SCRIPT)
    process = await asyncio.create_subprocess_exec(
        str(tb_python), str(script), base_url, device.token, "30000", str(tmp_path / "sdk-http.bin"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), SCRIPT_LIMIT)
    assert process.returncode == 0, stderr.decode()
    result = json.loads(stdout.decode().splitlines()[-1])
    assert result["size"] == len(IMAGE)
    assert [t.get("fw_state") for t in result["sent"]] == \
        [None, "DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]
    firmware = await shown_progress(api, gateway, device.id, package["package_id"])
    assert firmware["state"] == "UPDATED" and firmware["current_fw_version"] == "2.0"
