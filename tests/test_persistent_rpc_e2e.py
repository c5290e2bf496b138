"""ThingsBoard's persistent RPC end to end: an operator's call stored while the device is offline
reaches it once it connects and listens (paho over MQTT, ThingsBoard's own tb-mqtt-client), its
reply settles it, and the management API lists, shows and deletes the calls, per project.

Deliveries run in the gateway's own tasks: the tests await its ``settled`` rather than polling.
"""

from __future__ import annotations

import asyncio
import secrets
import textwrap
import time
from pathlib import Path

import orjson
import pytest
from aiocoap import Code, Message

from fleetgate.app import Gateway
from tests.coap_support import TIMEOUT, coap_client, request
from tests.management_client import Management, assert_error
from tests.sdk_script import TB_MQTT_PREAMBLE, running_script
from tests.persistent_rpc_support import RPC_REQUESTS, offline_device, persistent_call, shown
from tests.support import Tenant, new_tenant

async def test_a_call_made_offline_is_delivered_once_when_the_device_subscribes(
    gateway: Gateway, http, api: Management, tenant: Tenant, clients, mqtt_port: int
) -> None:
    device_id, token = await offline_device(http, api, tenant)
    before = int(time.time() * 1000)
    queued = await persistent_call(api, device_id, timeout=5000)
    assert (queued["status"], queued["method"], queued["params"], queued["persistent"]) == (
        "QUEUED", "setGpio", {"pin": 4}, True)
    # The default expiration (rpc_persistent_ttl_seconds) and retries (rpc_persistent_retries).
    ttl = round(gateway.settings.rpc_persistent_ttl_seconds * 1000)
    assert before + ttl <= queued["expiration_time"] <= int(time.time() * 1000) + ttl
    assert queued["retries"] == gateway.settings.rpc_persistent_retries

    client = clients()
    await client.connect(mqtt_port, username=token)
    await gateway.persistent_rpc.settled()
    assert (await shown(api, device_id, queued["command_id"]))["status"] == "QUEUED"  # connected, not listening

    await client.subscribe(RPC_REQUESTS)
    request = await client.next_message()
    assert request.topic.startswith("v1/devices/me/rpc/request/")
    assert orjson.loads(request.payload) == {"method": "setGpio", "params": {"pin": 4}}
    await client.publish(request.topic.replace("/request/", "/response/"), b'{"pin":4,"value":1}')
    await gateway.persistent_rpc.settled()
    call = await shown(api, device_id, queued["command_id"])
    assert (call["status"], call["response"], call["attempts"]) == ("SUCCESSFUL", {"pin": 4, "value": 1}, 1)
    listed = await api.call("GET", f"/devices/{device_id}/commands")
    assert listed.body["page"]["count"] == 1
    assert [(c["command_id"], c["status"]) for c in listed.body["commands"]] == [(queued["command_id"], "SUCCESSFUL")]

    # Reconnected and subscribed again, the device gets only what is new: a lightweight call.
    await client.close()
    again = clients()
    await again.connect(mqtt_port, username=token)
    await again.subscribe(RPC_REQUESTS)
    await gateway.persistent_rpc.settled()
    lightweight = asyncio.ensure_future(api.call("POST", f"/devices/{device_id}/commands",
                                                 json={"method": "check", "timeout": 5000}))
    request = await again.next_message()
    assert orjson.loads(request.payload) == {"method": "check", "params": None}
    await again.publish(request.topic.replace("/request/", "/response/"), b'"fine"')
    reply = await lightweight
    assert (reply.status, reply.body) == (200, {"response": "fine"})


async def test_an_http_rpc_long_poll_takes_a_call_made_offline(
    gateway: Gateway, http, api: Management, tenant: Tenant
) -> None:
    device_id, token = await offline_device(http, api, tenant)
    queued = await persistent_call(api, device_id)
    async with http.get(f"/api/v1/{token}/rpc", params={"timeout": "10000"}) as resp:
        assert resp.status == 200, await resp.text()
        request = orjson.loads(await resp.read())
    assert (request["method"], request["params"]) == ("setGpio", {"pin": 4})
    async with http.post(f"/api/v1/{token}/rpc/{request['id']}", json={"value": 1}) as resp:
        assert resp.status == 200
    await gateway.persistent_rpc.settled()
    call = await shown(api, device_id, queued["command_id"])
    assert (call["status"], call["response"]) == ("SUCCESSFUL", {"value": 1})


async def test_a_coap_rpc_observation_takes_a_call_made_offline(
    gateway: Gateway, http, api: Management, tenant: Tenant, coap_url: str
) -> None:
    device_id, token = await offline_device(http, api, tenant)
    queued = await persistent_call(api, device_id)
    async with coap_client() as client, asyncio.timeout(TIMEOUT):
        observed = client.request(Message(code=Code.GET, uri=f"{coap_url}/api/v1/{token}/rpc", observe=0))
        assert (await observed.response).code == Code.CONTENT
        pushed = orjson.loads((await anext(aiter(observed.observation))).payload)
        assert (pushed["method"], pushed["params"]) == ("setGpio", {"pin": 4})
        reply = await request(client, Code.POST, f"{coap_url}/api/v1/{token}/rpc/{pushed['id']}", b'"on"')
        assert reply.code == Code.CREATED
        await gateway.persistent_rpc.settled()
        observed.observation.cancel()
    call = await shown(api, device_id, queued["command_id"])
    assert (call["status"], call["response"]) == ("SUCCESSFUL", "on")


async def test_a_call_for_a_device_listening_goes_out_at_once_and_times_out_after_its_retries(
    gateway: Gateway, http, api: Management, tenant: Tenant, clients, mqtt_port: int
) -> None:
    device_id, token = await offline_device(http, api, tenant)
    client = clients()
    await client.connect(mqtt_port, username=token)
    await client.subscribe(RPC_REQUESTS)
    queued = await persistent_call(api, device_id, timeout=200, retries=1)
    first, second = await client.next_message(), await client.next_message()  # sent, then retried
    assert orjson.loads(first.payload) == orjson.loads(second.payload) == {"method": "setGpio", "params": {"pin": 4}}
    await gateway.persistent_rpc.settled()
    call = await shown(api, device_id, queued["command_id"])
    assert (call["status"], call["attempts"], call["response"]) == ("TIMEOUT", 2, None)


async def test_a_call_past_its_expiration_time_is_expired(
    gateway: Gateway, http, api: Management, tenant: Tenant, clients, mqtt_port: int
) -> None:
    device_id, token = await offline_device(http, api, tenant)
    # Offline until its expiration time passed (set in the past here, rather than waited for).
    offline = await persistent_call(api, device_id)
    await gateway.services.pool.execute("UPDATE rpc_calls SET expiration_time = $2 WHERE id = $1",
                                        offline["command_id"], int(time.time() * 1000) - 1)
    assert (await shown(api, device_id, offline["command_id"]))["status"] == "EXPIRED"

    # Delivered, unanswered, and its expiration time comes before its timeout.
    client = clients()
    await client.connect(mqtt_port, username=token)
    await client.subscribe(RPC_REQUESTS)
    await gateway.persistent_rpc.settled()  # the expired call is not sent
    delivered = await persistent_call(api, device_id, timeout=60_000, retries=3,
                                      expiration_time=int(time.time() * 1000) + 300)
    await client.next_message()
    await gateway.persistent_rpc.settled()
    call = await shown(api, device_id, delivered["command_id"])
    assert (call["status"], call["attempts"]) == ("EXPIRED", 1)


async def test_calls_are_listed_shown_and_deleted_within_their_project(
    gateway: Gateway, http, api: Management, tenant: Tenant
) -> None:
    device_id, _ = await offline_device(http, api, tenant)
    made = [await persistent_call(api, device_id, oneway=True) for _ in range(3)]
    page = await api.call("GET", f"/devices/{device_id}/commands", params={"limit": 2})
    assert page.status == 200 and page.body["page"]["count"] == 3
    newest_first = [c["command_id"] for c in reversed(made)]
    assert [c["command_id"] for c in page.body["commands"]] == newest_first[:2]
    rest = await api.call("GET", f"/devices/{device_id}/commands", params={"marker": page.body["page"]["marker"]})
    assert [c["command_id"] for c in rest.body["commands"]] == newest_first[2:]

    gone = made[0]["command_id"]
    assert (await api.call("DELETE", f"/devices/{device_id}/commands/{gone}")).status == 204
    assert_error(await api.call("GET", f"/devices/{device_id}/commands/{gone}"), 404, "IOTDA.000005")
    assert_error(await api.call("DELETE", f"/devices/{device_id}/commands/{gone}"), 404, "IOTDA.000005")
    assert (await api.call("GET", f"/devices/{device_id}/commands")).body["page"]["count"] == 2

    # Another project's token: 403 on this project's paths, 404 for this device under its own project.
    other = await new_tenant(gateway.services)
    kept = made[1]["command_id"]
    for method, path, body in (("GET", f"/devices/{device_id}/commands", None),
                               ("GET", f"/devices/{device_id}/commands/{kept}", None),
                               ("DELETE", f"/devices/{device_id}/commands/{kept}", None),
                               ("POST", f"/devices/{device_id}/commands", {"method": "x", "persistent": True})):
        assert_error(await api.call(method, path, json=body, token=other.token), 403, "IOTDA.000004")
        assert_error(await api.call(method, path, json=body, token=other.token, project_id=other.project_id),
                     404, "IOTDA.000005")
    assert (await shown(api, device_id, kept))["status"] == "QUEUED"

    for bad in ({"expiration_time": int(time.time() * 1000) - 1}, {"expiration_time": "soon"}, {"retries": -1},
                {"retries": True}, {"timeout": 0}):
        reply = await api.call("POST", f"/devices/{device_id}/commands",
                               json={"method": "x", "persistent": True, **bad})
        assert_error(reply, 400, "IOTDA.000006")
    assert (await api.call("GET", f"/devices/{device_id}/commands")).body["page"]["count"] == 2
    assert_error(await api.call("GET", "/devices/no-such-device/commands"), 404, "IOTDA.000005")


SDK_SCRIPT = TB_MQTT_PREAMBLE + textwrap.dedent(
    """
    from tb_device_mqtt import TBDeviceMqttClient


    def on_rpc(request_id, content):
        emit("rpc_request", id=request_id, content=content)
        client.send_rpc_reply(request_id, {"done": content["params"]})


    for do, command in commands():
        if do == "connect":  # the RPC handler is set before the client connects
            client = TBDeviceMqttClient(command["host"], port=command["port"], username=command["username"])
            client.set_server_side_rpc_request_handler(on_rpc)
            connect(client, 4)
            emit("connected", subscribed=subscribed.wait(WAIT), is_connected=client.is_connected())
        elif do == "disconnect":
            client.disconnect()
            client.stop()
            emit("disconnected")
    """
)


@pytest.fixture
def sdk_script(tmp_path: Path) -> Path:
    script = tmp_path / "tb_sdk_persistent_rpc.py"
    script.write_text(SDK_SCRIPT)
    return script


async def test_thingsboards_sdk_receives_a_call_made_while_it_was_offline(
    gateway: Gateway, http, api: Management, tenant: Tenant, mqtt_port: int, tb_python, sdk_script: Path
) -> None:
    device_id, token = await offline_device(http, api, tenant)
    queued = await persistent_call(api, device_id, params={"pin": secrets.randbelow(40)})
    async with running_script(tb_python, sdk_script, 120) as client:
        connected = await client.call("connect", "connected", host="127.0.0.1", port=mqtt_port, username=token)
        assert connected["is_connected"] and connected["subscribed"], client.events
        request = await client.event("rpc_request")
        assert request["content"] == {"method": "setGpio", "params": queued["params"]}
        await gateway.persistent_rpc.settled()
        call = await shown(api, device_id, queued["command_id"])
        assert (call["status"], call["response"]) == ("SUCCESSFUL", {"done": queued["params"]})
        await client.call("disconnect", "disconnected")
        assert not [e for e in client.events if e["event"] == "rpc_request"][1:]  # delivered once
