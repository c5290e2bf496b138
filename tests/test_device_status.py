"""Device connectivity end to end: real PostgreSQL, real sockets, independent clients. A device's
status in the management API as it connects, sends, disconnects, goes quiet; across a gateway
process that stops or is killed; the status filter; the gauge in /metrics."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiocoap
import aiohttp
import pytest
from aiocoap import Code

from fleetgate.app import Gateway
from fleetgate.protocols.mqtt.packets import Disconnect
from tests.coap_support import coap_client, request
from tests.conftest import listener_url
from tests.management_client import Management, assert_error
from tests.metrics_support import scrape, value
from tests.mqtt_raw import RawMqtt
from tests.paho_async import AsyncPaho
from tests.process import GatewayProcess
from tests.support import free_port, gateway_settings, new_tenant, provision_token, running_gateway

INACTIVITY = 1.5  # seconds: device_inactivity_timeout_seconds of this module's gateway


@pytest.fixture(scope="module")
async def gw(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """A gateway that writes connectivity when the test says so (presence.flush()), and
    forgets requests quickly."""
    settings = gateway_settings(str(tmp_path_factory.mktemp("presence")), presence_flush_seconds=60,
                                device_inactivity_timeout_seconds=INACTIVITY)
    async with running_gateway(database_url, settings) as gateway:
        yield gateway


@pytest.fixture
async def api(gw: Gateway) -> AsyncIterator[Management]:
    tenant = await new_tenant(gw.services)
    async with aiohttp.ClientSession(listener_url(gw, "management")) as http:
        yield Management(http, tenant)


@pytest.fixture
async def device_http(gw: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(listener_url(gw, "http")) as http:
        yield http


def port(gw: Gateway, name: str) -> int:
    return int(listener_url(gw, name).rsplit(":", 1)[1])


async def new_device(api: Management, device_http: aiohttp.ClientSession) -> tuple[str, str]:
    """A device provisioned over HTTP: its id and access token."""
    name = "st-" + secrets.token_hex(4)
    token = await provision_token(device_http, api.tenant, name)
    listed = await api.call("GET", "/devices", params={"device_name": name})
    return listed.body["devices"][0]["device_id"], token


async def shown(api: Management, device_id: str) -> dict[str, Any]:
    reply = await api.call("GET", f"/devices/{device_id}")
    assert reply.status == 200, reply
    return reply.body


async def becomes(api: Management, device_id: str, status: str, *, gw: Gateway | None = None,
                  within: float = 10) -> dict[str, Any]:
    """The device once it shows ``status``: after the write of ``gw`` (which the test makes), or,
    for a gateway in a process of its own or a lease running out, once time has passed."""
    async with asyncio.timeout(within):
        while True:
            if gw is not None:
                await gw.presence.flush()
            device = await shown(api, device_id)
            if device["status"] == status:
                return device
            await asyncio.sleep(0.05)


def connectivity(device: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(device[k] for k in ("status", "last_online_time", "last_offline_time", "last_activity_time"))


async def test_a_new_device_has_never_been_online(api: Management) -> None:
    device = await api.create_device("never")
    assert connectivity(device) == ("OFFLINE", None, None, None)
    assert connectivity(await shown(api, device["device_id"])) == ("OFFLINE", None, None, None)


async def test_an_mqtt_device_is_online_while_connected(gw: Gateway, api: Management, device_http) -> None:
    device_id, token = await new_device(api, device_http)
    client = AsyncPaho()
    try:
        await client.connect(port(gw, "mqtt"), username=token)
        await gw.presence.flush()
        online = await shown(api, device_id)
        assert online["status"] == "ONLINE" and online["last_online_time"] is not None
        assert (online["last_offline_time"], online["last_activity_time"]) == (None, None)

        await client.publish("v1/devices/me/telemetry", b'{"t":1}')
        await gw.presence.flush()
        active = await shown(api, device_id)
        assert active["status"] == "ONLINE" and active["last_activity_time"] >= online["last_online_time"]
    finally:
        await client.close()
    # DISCONNECT: OFFLINE as soon as the gateway has written it, the inactivity timeout aside.
    offline = await becomes(api, device_id, "OFFLINE", gw=gw, within=INACTIVITY / 2)
    assert offline["last_offline_time"] >= online["last_online_time"]
    assert offline["last_online_time"] == online["last_online_time"]


async def test_an_mqtt_device_that_stops_answering_is_offline_after_its_keep_alive(
    gw: Gateway, api: Management, device_http
) -> None:
    device_id, token = await new_device(api, device_http)
    client = await RawMqtt.open(port(gw, "mqtt"))
    await client.connect(username=token, keep_alive=1)
    await gw.presence.flush()
    assert (await shown(api, device_id))["status"] == "ONLINE"
    # Silent: the gateway closes the connection after 1.5 keep-alives, and the device is offline.
    assert await client.closed(timeout=5)
    await gw.presence.flush()
    assert (await shown(api, device_id))["status"] == "OFFLINE"
    await client.close()


async def test_an_http_device_is_online_until_the_inactivity_timeout(
    gw: Gateway, api: Management, device_http
) -> None:
    device_id, token = await new_device(api, device_http)
    async with device_http.post(f"/api/v1/{token}/telemetry", data=b'{"t":1}') as resp:
        assert resp.status == 200
    await gw.presence.flush()
    online = await shown(api, device_id)
    assert online["status"] == "ONLINE"
    assert online["last_online_time"] == online["last_activity_time"]
    # Nothing more: the status turns when the timeout has passed, with nothing written.
    offline = await becomes(api, device_id, "OFFLINE", within=INACTIVITY + 5)
    assert offline["last_offline_time"] >= online["last_online_time"]


async def test_a_coap_device_is_online_until_the_inactivity_timeout(
    gw: Gateway, api: Management, device_http
) -> None:
    device_id, token = await new_device(api, device_http)
    async with coap_client() as context:
        response = await request(context, Code.POST, f"{listener_url(gw, 'coap')}/api/v1/{token}/telemetry",
                                 b'{"t":1}')
        assert response.code == Code.CREATED
    await gw.presence.flush()
    assert (await shown(api, device_id))["status"] == "ONLINE"
    await becomes(api, device_id, "OFFLINE", within=INACTIVITY + 5)


async def test_the_list_filters_by_status(gw: Gateway, api: Management, device_http) -> None:
    connected_id, token = await new_device(api, device_http)
    quiet_id, _ = await new_device(api, device_http)
    client = await RawMqtt.open(port(gw, "mqtt"))
    try:
        await client.connect(username=token)
        await gw.presence.flush()
        for status, expected in (("ONLINE", [connected_id]), ("OFFLINE", [quiet_id])):
            listed = await api.call("GET", "/devices", params={"status": status})
            assert listed.status == 200
            assert [d["device_id"] for d in listed.body["devices"]] == expected
            assert listed.body["page"]["count"] == 1
            assert {d["status"] for d in listed.body["devices"]} == {status}
        everything = await api.call("GET", "/devices")
        assert everything.body["page"]["count"] == 2
        assert_error(await api.call("GET", "/devices", params={"status": "online"}), 400, "IOTDA.000006")
    finally:
        await client.send(Disconnect())
        await client.closed()
        await client.close()


async def test_the_gauge_counts_devices_online_by_protocol(gw: Gateway, api: Management, device_http) -> None:
    device_id, token = await new_device(api, device_http)
    async with aiohttp.ClientSession(listener_url(gw, "management")) as management:
        before = value(await scrape(management), "gateway_devices_online", protocol="mqtt")
        client = await RawMqtt.open(port(gw, "mqtt"))
        await client.connect(username=token)
        try:
            assert value(await scrape(management), "gateway_devices_online", protocol="mqtt") == before + 1
        finally:
            await client.send(Disconnect())
            await client.closed()
            await client.close()
        assert value(await scrape(management), "gateway_devices_online", protocol="mqtt") == before

        async with device_http.post(f"/api/v1/{token}/telemetry", data=b'{"t":1}') as resp:
            assert resp.status == 200
        await gw.presence.flush()
        assert value(await scrape(management), "gateway_devices_online", protocol="http") >= 1


@asynccontextmanager
async def gateway_process(database_url: str, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    """A gateway in a process of its own, writing connectivity every 0.2 s; killed at the end if still running."""
    proc = await GatewayProcess.start(database_url, str(tmp_path), management_port=free_port(),
                                      mqtt_port=free_port(), presence_flush_seconds=0.2)
    try:
        yield proc
    finally:
        await proc.kill()


async def online_over_mqtt(api: Management, proc: GatewayProcess, device_id: str,
                           token: str) -> tuple[RawMqtt, dict[str, Any]]:
    """The device connected to ``proc`` over MQTT: its connection, and the device once shown ONLINE."""
    client = await RawMqtt.open(proc.port("mqtt"))
    await client.connect(username=token)
    return client, await becomes(api, device_id, "ONLINE")


async def test_a_stopped_gateway_leaves_its_devices_offline_at_once(
    database_url: str, gw: Gateway, api: Management, device_http, tmp_path
) -> None:
    device_id, token = await new_device(api, device_http)
    async with gateway_process(database_url, tmp_path) as proc:
        client, online = await online_over_mqtt(api, proc, device_id, token)
        assert await proc.stop() == 0
        offline = await shown(api, device_id)
        assert offline["status"] == "OFFLINE"
        assert offline["last_offline_time"] >= online["last_online_time"]
        await client.close()


async def test_a_killed_gateway_leaves_its_devices_offline_once_its_lease_runs_out(
    database_url: str, gw: Gateway, api: Management, device_http, tmp_path
) -> None:
    device_id, token = await new_device(api, device_http)
    async with gateway_process(database_url, tmp_path) as proc:
        client, online = await online_over_mqtt(api, proc, device_id, token)
        await proc.kill()  # SIGKILL: nothing is written on the way out
    await client.close()
    # The lease is 5 writes (1 s): the device is OFFLINE once it has run out, written or not.
    offline = await becomes(api, device_id, "OFFLINE", within=5)
    assert offline["last_offline_time"] >= online["last_online_time"]
    # The next write of a live process clears the dead one's rows; the device reads the same.
    await gw.presence.flush()
    assert await shown(api, device_id) == offline
    assert not await gw.services.pool.fetchval(
        "SELECT count(*) FROM device_connections WHERE device_id = $1", device_id)


async def test_a_coap_observation_keeps_the_device_online(gw: Gateway, api: Management, device_http) -> None:
    device_id, token = await new_device(api, device_http)
    async with coap_client() as context:
        observed = context.request(aiocoap.Message(code=Code.GET, uri=f"{listener_url(gw, 'coap')}/api/v1/{token}/rpc",
                                                   observe=0))
        assert (await observed.response).code == Code.CONTENT
        await gw.presence.flush()
        assert (await shown(api, device_id))["status"] == "ONLINE"
        # Past the time a request would have kept it online: the observation still does.
        await asyncio.sleep(INACTIVITY)
        await gw.presence.flush()
        assert (await shown(api, device_id))["status"] == "ONLINE"
        observed.observation.cancel()
