"""ThingsBoard's MQTT gateway API judged by ThingsBoard's own client: tb-mqtt-client's
TBGatewayMqttClient (MQTT 5), a gateway device speaking for its sub-devices.

The SDK runs as a script in its own virtual environment (tests/tb_sdk_venv.py), driven
over its stdin and stdout (tests/sdk_script.py). The refusals (a plain device on the
gateway topics, a gateway naming another project's device) are checked with paho.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from fleetgate.app import Gateway
from tests.management_client import Management
from tests.paho_async import AsyncPaho
from tests.sdk_script import TB_MQTT_PREAMBLE, ScriptClient, running_script
from tests.support import Tenant, new_tenant, provision
from tests.telemetry_support import stored

SCRIPT_LIMIT = 120  # seconds: the script exits by itself after this, whatever it is doing

SCRIPT = TB_MQTT_PREAMBLE + textwrap.dedent(
    """
    from tb_gateway_mqtt import TBGatewayMqttClient


    def on_attribute_update(subscription):
        def callback(content):
            emit("attribute_update", subscription=subscription, content=content)
        return callback


    def on_rpc(replies):
        # Runs on paho's thread: the reply is sent, never waited for, here.
        def handler(gateway, content):
            emit("rpc_request", content=content)
            gateway.gw_send_rpc_reply(content["device"], content["data"]["id"], replies[content["device"]])
        return handler


    for do, command in commands():
        if do == "connect":
            client = TBGatewayMqttClient(command["host"], port=command["port"], username=command["username"])
            connect(client, 7)  # the device API's four filters, then the gateway API's three
            emit("connected", subscribed=subscribed.wait(WAIT), subacks=subacks, limits=limits.wait(WAIT),
                 is_connected=client.is_connected())
        elif do == "connect_device":
            kind = {"device_type": command["type"]} if "type" in command else {}
            emit("published", **wait_published(client.gw_connect_device(command["device"], **kind)))
        elif do == "telemetry":
            emit("published", **wait_published(client.gw_send_telemetry(command["device"], command["data"])))
        elif do == "attributes":
            emit("published", **wait_published(client.gw_send_attributes(command["device"], command["data"])))
        elif do == "request_attributes":
            request = client.gw_request_client_attributes if command["client"] else client.gw_request_shared_attributes
            request(command["device"], command["keys"], on_attribute_response)
        elif do == "subscribe":
            device, attribute = command["device"], command["attribute"]
            callback = on_attribute_update(device + "|" + attribute)
            emit("subscription", id=client.gw_subscribe_to_attribute(device, attribute, callback))
        elif do == "subscribe_all":
            emit("subscription", id=client.gw_subscribe_to_all_attributes(on_attribute_update("*|*")))
        elif do == "rpc_handler":
            client.gw_set_server_side_rpc_request_handler(on_rpc(command["replies"]))
            emit("rpc_handler_set")
        elif do == "disconnect_device":
            emit("published", **wait_published(client.gw_disconnect_device(command["device"])))
        elif do == "disconnect":
            client.disconnect()
            client.stop()
            emit("disconnected")
        elif do == "exit":
            break
    """
)

ACKED = {"event": "published", "acked": True, "reasons": [0], "messages": 1}


@pytest.fixture
def sdk_script(tmp_path: Path) -> Path:
    script = tmp_path / "tb_gateway_mqtt_client.py"
    script.write_text(SCRIPT)
    return script


@pytest.fixture
async def gateway_device(http, tenant: Tenant) -> tuple[str, str]:
    """A gateway device (ThingsBoard's provisioning field ``"gateway": true``): its name and access token."""
    name, result = await provision(http, tenant, gateway=True)
    assert result["status"] == "SUCCESS", result
    return name, result["credentialsValue"]


def names() -> tuple[str, str]:
    suffix = secrets.token_hex(3)
    return f"Thermostat {suffix}", f"Meter {suffix}"


async def connect(client: ScriptClient, port: int, token: str) -> None:
    connected = await client.call("connect", "connected", host="127.0.0.1", port=port, username=token)
    assert connected["is_connected"], client.events
    # The device API's four subscriptions and the gateway API's three, each granted at QoS 1.
    assert connected["subscribed"] and connected["subacks"] == [1] * 7, connected
    assert connected["limits"], client.events


@asynccontextmanager
async def connected_gateway(tb_python: Path, script: Path, port: int, token: str,
                            *sub_devices: str) -> AsyncIterator[ScriptClient]:
    """The SDK connected as the gateway device, these sub-devices connected through it (each
    acknowledged); once the block is done, disconnected and ended (its log then in ``log``)."""
    async with running_script(tb_python, script, SCRIPT_LIMIT) as client:
        await connect(client, port, token)
        for name in sub_devices:
            assert await client.call("connect_device", "published", device=name) == ACKED
        yield client
        await client.call("disconnect", "disconnected")
        await client.finish()


async def device_of(api: Management, name: str) -> dict[str, Any]:
    """The management API's view of the project's device of this name."""
    reply = await api.call("GET", "/devices", params={"device_name": name})
    assert reply.status == 200, reply
    (device,) = [d for d in reply.body["devices"] if d["device_name"] == name]
    shown = await api.call("GET", f"/devices/{device['device_id']}")
    assert shown.status == 200, shown
    return shown.body


async def products_and_parents(gateway: Gateway, tenant: Tenant) -> dict[str, tuple[str, str | None]]:
    """name -> (product name, its gateway's name) for every device of the project."""
    rows = await gateway.services.pool.fetch(
        "SELECT d.name, p.name AS product, g.name AS parent FROM devices d JOIN products p ON p.id = d.product_id "
        "LEFT JOIN devices g ON g.id = d.gateway_id WHERE d.project_id = $1", tenant.project_id)
    return {r["name"]: (r["product"], r["parent"]) for r in rows}


async def set_shared(api: Management, device_id: str, values: dict[str, Any]) -> None:
    reply = await api.call("POST", f"/devices/{device_id}/attributes", params={"scope": "SHARED_SCOPE"}, json=values)
    assert reply.status == 200, reply


async def test_sub_devices_connect_and_their_data_is_stored_and_answered(
    gateway, api, tenant, gateway_device, mqtt_port, tb_python, sdk_script
) -> None:
    gateway_name, token = gateway_device
    thermostat, meter = names()
    async with connected_gateway(tb_python, sdk_script, mqtt_port, token) as client:
        # One with a type, one with none of ours: the SDK then sends its own "default".
        assert await client.call("connect_device", "published", device=thermostat, type="thermostat") == ACKED
        assert await client.call("connect_device", "published", device=meter) == ACKED
        devices = await products_and_parents(gateway, tenant)
        assert devices[thermostat] == ("thermostat", gateway_name)
        assert devices[meter] == ("default", gateway_name)

        # Each PUBACK came after its rows were committed.
        sent = await client.call("telemetry", "published", device=thermostat, data={"temperature": 21.5, "on": True})
        assert sent == ACKED
        sent = await client.call("telemetry", "published", device=meter,
                                 data=[{"ts": 1767225600000, "values": {"energy": 1200}},
                                       {"ts": 1767225601000, "values": {"energy": 1201}}])
        assert sent["acked"] and set(sent["reasons"]) == {0}
        assert await stored(gateway, tenant, thermostat) == {"temperature": "21.5", "on": "true"}
        energy = await gateway.services.pool.fetch(
            "SELECT t.ts, t.long_v FROM ts_kv t JOIN devices d ON d.id = t.device_id "
            "WHERE d.name = $1 AND d.project_id = $2 ORDER BY t.ts", meter, tenant.project_id)
        assert [tuple(r) for r in energy] == [(1767225600000, 1200), (1767225601000, 1201)]

        sent = await client.call("attributes", "published", device=thermostat, data={"fw": "1.0.3", "serial": 1234})
        assert sent["acked"] and set(sent["reasons"]) == {0}
        sent = await client.call("attributes", "published", device=meter, data={"model": "M-1"})
        assert sent["acked"] and set(sent["reasons"]) == {0}

        thermostat_id = (await device_of(api, thermostat))["device_id"]
        await set_shared(api, thermostat_id, {"target": 21.5, "mode": "eco"})
        # ThingsBoard's answer: "value" when one attribute is found, "values" when several.
        answer = await client.call("request_attributes", "attribute_response", device=thermostat, client=True,
                                   keys=["fw"])
        assert answer["error"] is None
        assert without_id(answer["content"]) == {"device": thermostat, "value": "1.0.3"}
        answer = await client.call("request_attributes", "attribute_response", device=thermostat, client=True,
                                   keys=["fw", "serial"])
        assert without_id(answer["content"]) == {"device": thermostat, "values": {"fw": "1.0.3", "serial": 1234}}
        answer = await client.call("request_attributes", "attribute_response", device=thermostat, client=False,
                                   keys=["mode", "target"])
        assert without_id(answer["content"]) == {"device": thermostat, "values": {"mode": "eco", "target": 21.5}}
        answer = await client.call("request_attributes", "attribute_response", device=meter, client=True,
                                   keys=["model"])
        assert without_id(answer["content"]) == {"device": meter, "value": "M-1"}
    assert "Unable to find callback" not in client.log

    attributes = await gateway.services.pool.fetch(
        "SELECT d.name, a.key, a.long_v, a.str_v FROM attribute_kv a JOIN devices d ON d.id = a.device_id "
        "WHERE d.project_id = $1 AND a.scope = 'CLIENT_SCOPE' ORDER BY d.name, a.key", tenant.project_id)
    assert sorted(tuple(r) for r in attributes) == sorted([
        (thermostat, "fw", None, "1.0.3"), (thermostat, "serial", 1234, None), (meter, "model", None, "M-1")])
    # The gateway device itself sent nothing of its own.
    assert await stored(gateway, tenant, gateway_name) == {}


def without_id(content: dict[str, Any]) -> dict[str, Any]:
    """An attribute response without its request id (the SDK's counter), checked to be one."""
    assert isinstance(content.pop("id"), int)
    return content


async def test_shared_attributes_and_server_side_rpc_reach_the_sub_device(
    gateway, api, tenant, gateway_device, mqtt_port, tb_python, sdk_script
) -> None:
    _, token = gateway_device
    thermostat, meter = names()
    async with connected_gateway(tb_python, sdk_script, mqtt_port, token, thermostat, meter) as client:
        assert (await client.call("subscribe", "subscription", device=thermostat, attribute="target"))["id"]
        assert (await client.call("subscribe_all", "subscription"))["id"]
        thermostat_id = (await device_of(api, thermostat))["device_id"]
        meter_id = (await device_of(api, meter))["device_id"]

        # An operator's shared attribute reaches the gateway, naming its sub-device: ThingsBoard's
        # {"device": "A", "data": {...}} on v1/gateway/attributes, to each matching callback.
        await set_shared(api, thermostat_id, {"target": 22})
        pushed = {"device": thermostat, "data": {"target": 22}}
        updates = [await client.event("attribute_update"), await client.event("attribute_update")]
        assert sorted((u["subscription"], orjson.dumps(u["content"])) for u in updates) == sorted(
            [("*|*", orjson.dumps(pushed)), (f"{thermostat}|target", orjson.dumps(pushed))])
        await set_shared(api, meter_id, {"interval": 30})
        update = await client.event("attribute_update")
        assert (update["subscription"], update["content"]) == ("*|*", {"device": meter, "data": {"interval": 30}})

        # An operator's RPC to a sub-device goes to the gateway, and its reply settles the call.
        await client.call("rpc_handler", "rpc_handler_set",
                          replies={thermostat: {"valve": "open"}, meter: {"reset": True}})
        for name, device_id, reply in ((thermostat, thermostat_id, {"valve": "open"}),
                                       (meter, meter_id, {"reset": True})):
            call = await api.call("POST", f"/devices/{device_id}/commands",
                                  json={"method": "set", "params": {"to": name}, "timeout": 10000})
            request = await client.event("rpc_request")
            assert request["content"]["device"] == name
            data = request["content"]["data"]
            assert isinstance(data.pop("id"), int)
            assert data == {"method": "set", "params": {"to": name}}
            assert (call.status, call.body) == (200, {"response": reply})


async def test_disconnect_is_acknowledged_and_the_sub_device_goes_offline(
    gateway, api, tenant, gateway_device, mqtt_port, tb_python, sdk_script
) -> None:
    _, token = gateway_device
    thermostat, meter = names()
    async with connected_gateway(tb_python, sdk_script, mqtt_port, token, thermostat, meter) as client:
        # Connectivity is written in batches: the test has this process write it now.
        await gateway.presence.flush()
        assert (await device_of(api, thermostat))["status"] == "ONLINE"
        assert await client.call("disconnect_device", "published", device=thermostat) == ACKED
        await gateway.presence.flush()
        shown = await device_of(api, thermostat)
        assert shown["status"] == "OFFLINE"
        assert shown["last_offline_time"] >= shown["last_online_time"]
        assert (await device_of(api, meter))["status"] == "ONLINE"
        # As for a disconnected device: the operator's call is refused at once.
        call = await api.call("POST", f"/devices/{shown['device_id']}/commands",
                              json={"method": "set", "params": {}, "timeout": 10000})
        assert (call.status, call.body["error_code"]) == (409, "IOTDA.014016")


# The refusals, with paho: a plain device on the gateway API, a gateway naming another project's device.


@pytest.mark.parametrize("version", [pytest.param(mqtt.MQTTv311, id="3.1.1"), pytest.param(mqtt.MQTTv5, id="5")])
async def test_a_plain_device_is_refused_the_gateway_api(gateway, http, tenant, mqtt_port, version) -> None:
    name, result = await provision(http, tenant)
    client = AsyncPaho(version=version)
    try:
        await client.connect(mqtt_port, username=result["credentialsValue"])
        victim = "behind-" + secrets.token_hex(3)
        for topic, body in (("v1/gateway/connect", {"device": victim}),
                            ("v1/gateway/telemetry", {victim: [{"a": 1}]}),
                            ("v1/gateway/attributes", {victim: {"b": 2}})):
            ack = await client.publish(topic, orjson.dumps(body))
            if version == mqtt.MQTTv5:
                assert ack.value == 0x90, topic  # topic name invalid, as for any topic not its own
        (refused,) = await client.subscribe("v1/gateway/rpc")
        assert refused.value == (0x8F if version == mqtt.MQTTv5 else 0x80)
        # Nothing was created or stored; the device may still use its own topics.
        ack = await client.publish("v1/devices/me/telemetry", b'{"still":1}')
        assert getattr(ack, "value", ack) == 0
    finally:
        await client.close()
    assert victim not in await products_and_parents(gateway, tenant)
    assert await stored(gateway, tenant, name) == {"still": "1"}


async def test_a_gateway_cannot_reach_another_project_s_device(gateway, http, tenant, gateway_device,
                                                               mqtt_port) -> None:
    other = await new_tenant(gateway.services)
    theirs, _ = await provision(http, other)  # a device of another project, named by the gateway below
    _, token = gateway_device
    client = AsyncPaho(version=mqtt.MQTTv5)
    try:
        await client.connect(mqtt_port, username=token)
        assert (await client.publish("v1/gateway/connect", orjson.dumps({"device": theirs}))).value == 0
        ack = await client.publish("v1/gateway/telemetry", orjson.dumps({theirs: [{"from_gateway": 1}]}))
        assert ack.value == 0
    finally:
        await client.close()
    # The gateway got a device of that name in its own project...
    ours = await products_and_parents(gateway, tenant)
    assert ours[theirs][0] == "default"
    assert await stored(gateway, tenant, theirs) == {"from_gateway": "1"}
    # ...and never touched the other project's.
    assert await stored(gateway, other, theirs) == {}
    untouched = await gateway.services.pool.fetchrow(
        "SELECT product_id, gateway_id FROM devices WHERE project_id = $1 AND name = $2", other.project_id, theirs)
    assert tuple(untouched) == (other.product_id, None)
