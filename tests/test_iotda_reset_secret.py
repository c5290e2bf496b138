"""IoTDA's ResetDeviceSecret: the old secret stops working at once, and with force_disconnect
the device's open connections are closed, in whichever gateway holds them. Driven by paho-mqtt
as the device and IoTDA's management JSON as the operator."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from tests.iotda_support import add_secret_device, connect, report, topic
from tests.paho_async import reason_value
from tests.support import gateway_settings, running_gateway

OLD, NEW = "AccSecret_0123", "NewSecret_4567"


async def reset(api, device_id: str, **body: object) -> dict[str, object]:
    reply = await api.call("POST", f"/devices/{device_id}/action", params={"action_id": "resetSecret"},
                           json={"secret": NEW, **body})
    assert reply.status == 200, reply
    return reply.body


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
async def test_force_disconnect_closes_the_connection_and_the_old_secret_is_refused(
        api, mqtt_port, clients, version) -> None:
    device_id = (await add_secret_device(api, f"node-force-{version}"))["device_id"]
    device, reason = await connect(clients, mqtt_port, device_id, OLD, version=version)
    assert reason == 0
    assert (await reset(api, device_id, force_disconnect=True))["secret"] == NEW
    reason = await device.wait_disconnected()
    if version == mqtt.MQTTv5:
        assert reason_value(reason) == 0x98  # Administrative action
    _, reason = await connect(clients, mqtt_port, device_id, OLD, version=version)
    assert reason != 0
    _, reason = await connect(clients, mqtt_port, device_id, NEW, version=version)
    assert reason == 0


async def test_without_force_disconnect_the_connection_stays(api, mqtt_port, clients) -> None:
    device_id = (await add_secret_device(api, "node-stays"))["device_id"]
    device, _ = await connect(clients, mqtt_port, device_id, OLD)
    await reset(api, device_id)
    # IoTDA's default: the open connection goes on; a new one needs the new secret.
    assert reason_value(await device.publish(topic(device_id, "properties/report"), report("S", {"t": 1}))) == 0
    assert not device.disconnected.done()
    _, reason = await connect(clients, mqtt_port, device_id, OLD)
    assert reason != 0


async def test_force_disconnect_reaches_the_gateway_that_holds_the_device(
        database_url, tmp_path, api, clients) -> None:
    device_id = (await add_secret_device(api, "node-held-elsewhere"))["device_id"]
    async with running_gateway(database_url, gateway_settings(str(tmp_path))) as other:
        port = next(int(listener.url.rsplit(":", 1)[1]) for listener in other.listeners if listener.name == "mqtt")
        device, reason = await connect(clients, port, device_id, OLD)
        assert reason == 0
        await reset(api, device_id, force_disconnect=True)
        await device.wait_disconnected()
        # That gateway authenticated the device moments ago: its cached credentials went too.
        _, reason = await connect(clients, port, device_id, OLD)
        assert reason != 0
        _, reason = await connect(clients, port, device_id, NEW)
        assert reason == 0


async def test_force_disconnect_must_be_a_boolean(api) -> None:
    device_id = (await add_secret_device(api, "node-force-type"))["device_id"]
    reply = await api.call("POST", f"/devices/{device_id}/action", params={"action_id": "resetSecret"},
                           json={"force_disconnect": "yes"})
    assert reply.status == 400 and reply.body["error_code"].startswith("IOTDA.")
