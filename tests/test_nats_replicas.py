"""Three gateway replicas (processes on their own ports, one PostgreSQL) over a 3-node NATS cluster:
an operator's calls through replica A reach devices on B and C; one NATS node lost is invisible;
all of NATS lost makes downlink calls 503 at once while uplink goes on; NATS back, downlink is
back. PostgreSQL hears no downlink NOTIFY meanwhile (a LISTEN of the test's own)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from fleetgate.storage.downlink_bus import CHANNEL
from tests.nats_support import nats_cluster, requires_nats_server
from tests.paho_async import AsyncPaho
from tests.process import GatewayProcess
from tests.support import free_port, provision, provision_device

pytestmark = requires_nats_server


class Device:
    """A device on one replica over MQTT (paho), answering every RPC with its params."""

    def __init__(self, device_id: str, client: AsyncPaho) -> None:
        self.id = device_id
        self.client = client
        self.attributes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        while True:
            message = await self.client.messages.get()
            if message.topic.startswith("v1/devices/me/rpc/request/"):
                request = orjson.loads(message.payload)
                self.requests.put_nowait(request)
                request_id = message.topic.rsplit("/", 1)[1]
                await self.client.publish(f"v1/devices/me/rpc/response/{request_id}",
                                          orjson.dumps({"echo": request["params"]}))
            elif message.topic == "v1/devices/me/attributes":
                self.attributes.put_nowait(orjson.loads(message.payload))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.client.client.disconnect()


@pytest.fixture
async def replicas(database_url, tmp_path) -> AsyncIterator[tuple[list, list[GatewayProcess]]]:
    async with nats_cluster(tmp_path / "nats", 3, jetstream=False) as nodes:
        every = ",".join(node.url for node in nodes)
        started: list[GatewayProcess] = []
        try:
            # B knows only the first node: it finds the others from the cluster, as a client does.
            for index, urls in enumerate((every, nodes[0].url, every)):
                started.append(await GatewayProcess.start(
                    database_url, str(tmp_path / f"replica-{index}"), management_port=free_port(),
                    mqtt_port=free_port(), nats_url=urls, shutdown_timeout_seconds=5))
            yield nodes, started
        finally:
            for process in started:
                await process.stop()


@pytest.fixture
async def notifications(database_url) -> AsyncIterator[list[str]]:
    """Every downlink NOTIFY PostgreSQL sends while the test runs."""
    heard: list[str] = []
    conn = await asyncpg.connect(database_url)
    await conn.add_listener(CHANNEL, lambda _c, _p, _ch, payload: heard.append(payload))
    yield heard
    await conn.close()


async def connect(gateway, http, tenant, replica: GatewayProcess) -> Device:
    device = await provision_device(http, gateway, tenant, prefix="replica-")
    client = AsyncPaho("c-" + secrets.token_hex(4))
    reason, _ = await client.connect(replica.port("mqtt"), username=device.token)
    assert reason == 0
    await client.subscribe("v1/devices/me/rpc/request/+", qos=0)
    await client.subscribe("v1/devices/me/attributes", qos=0)
    return Device(device.id, client)


async def rpc(api: aiohttp.ClientSession, tenant, device: Device, n: int) -> tuple[int, dict]:
    async with api.post(f"/v5/iot/{tenant.project_id}/devices/{device.id}/commands",
                        json={"method": "echo", "params": {"n": n}, "timeout": 5000},
                        headers={"X-Auth-Token": tenant.token}) as resp:
        return resp.status, orjson.loads(await resp.read())


async def push(api: aiohttp.ClientSession, tenant, device: Device, values: dict) -> int:
    async with api.post(f"/v5/iot/{tenant.project_id}/devices/{device.id}/attributes",
                        params={"scope": "SHARED_SCOPE"}, json=values,
                        headers={"X-Auth-Token": tenant.token}) as resp:
        return resp.status


async def bus_gauge(api: aiohttp.ClientSession) -> str:
    async with api.get("/metrics") as resp:
        text = await resp.text()
    return next(line.rsplit(" ", 1)[1] for line in text.splitlines()
                if line.startswith("gateway_downlink_bus_connected "))


async def test_three_replicas_over_a_nats_cluster(gateway, http, tenant, replicas, notifications) -> None:
    nodes, (a, b, c) = replicas
    on_b, on_c = await connect(gateway, http, tenant, b), await connect(gateway, http, tenant, c)
    async with aiohttp.ClientSession(a.listeners["management"]) as api:
        # through A, to devices on B and C
        for n, device in enumerate((on_b, on_c)):
            assert await rpc(api, tenant, device, n) == (200, {"response": {"echo": {"n": n}}})
            assert await push(api, tenant, device, {"interval": n}) == 200
            assert await device.attributes.get() == {"interval": n}

        # one node killed while calls go on: every call succeeds
        under_way = asyncio.Event()

        async def calls(count: int) -> list[tuple[int, dict]]:
            results = []
            for n in range(count):
                results.append(await rpc(api, tenant, (on_b, on_c)[n % 2], n))
                if n == 4:
                    under_way.set()
            return results

        running = asyncio.create_task(calls(40))
        await under_way.wait()
        await nodes[0].stop(signal.SIGKILL)  # B's, and perhaps others'
        assert await running == [(200, {"response": {"echo": {"n": n}}}) for n in range(40)]
        assert b.count("NATS connection lost") == 1 and b.count("NATS connected") == 2  # B moved

        # all of NATS stopped: downlink calls are 503 at once, uplink goes on
        lost = [replica.count("NATS connection lost") for replica in (a, b, c)]
        await asyncio.gather(nodes[1].stop(), nodes[2].stop())
        for replica, before in zip((a, b, c), lost):  # each has noticed
            await replica.logged_times("NATS connection lost", before + 1)
        connected = [replica.count("NATS connected") for replica in (a, b, c)]
        assert await bus_gauge(api) == "0.0"
        started = time.monotonic()
        status, body = await rpc(api, tenant, on_b, 0)
        assert (status, body["error_code"]) == (503, "IOTDA.000003")
        assert await push(api, tenant, on_c, {"interval": 99}) == 503
        assert time.monotonic() - started < 5
        reason = await on_b.client.publish("v1/devices/me/telemetry", b'{"t": 21.5}', qos=1)
        assert not reason.is_failure
        # NATS back: downlink is back, with no restart
        await asyncio.gather(*(node.start() for node in nodes))
        for replica, before in zip((a, b, c), connected):
            await replica.logged_times("NATS connected", before + 1, timeout=30)
        assert await rpc(api, tenant, on_c, 5) == (200, {"response": {"echo": {"n": 5}}})
        assert await bus_gauge(api) == "1.0"
        assert await push(api, tenant, on_b, {"interval": 6}) == 200
        assert await on_b.attributes.get() == {"interval": 6}
    assert notifications == []
    await on_b.close()
    await on_c.close()


async def test_persistent_rpc_and_sub_devices_are_routed_too(gateway, http, tenant, replicas, notifications) -> None:
    _, (a, b, c) = replicas
    on_b = await connect(gateway, http, tenant, b)
    _, provisioned = await provision(http, tenant, gateway=True)
    relay = AsyncPaho("gw-" + secrets.token_hex(4))
    reason, _ = await relay.connect(c.port("mqtt"), username=provisioned["credentialsValue"])
    assert reason == 0
    await relay.subscribe("v1/gateway/rpc", qos=0)
    sub = "sub-" + secrets.token_hex(3)
    await relay.publish("v1/gateway/connect", orjson.dumps({"device": sub, "type": "relay"}))
    sub_id = await gateway.services.pool.fetchval(
        "SELECT id FROM devices WHERE project_id = $1 AND name = $2", tenant.project_id, sub)
    async with aiohttp.ClientSession(a.listeners["management"]) as api:
        # a persistent call through A goes out on B, where the device listens
        async with api.post(f"/v5/iot/{tenant.project_id}/devices/{on_b.id}/commands",
                            json={"method": "later", "params": {"k": 1}, "persistent": True},
                            headers={"X-Auth-Token": tenant.token}) as resp:
            assert (resp.status, orjson.loads(await resp.read())["status"]) == (202, "QUEUED")
        async with asyncio.timeout(10):
            assert await on_b.requests.get() == {"method": "later", "params": {"k": 1}}
        # a sub-device behind a gateway device on C, called through A
        call = asyncio.ensure_future(api.post(
            f"/v5/iot/{tenant.project_id}/devices/{sub_id}/commands",
            json={"method": "setGpio", "params": {"pin": 4}, "timeout": 10000}, headers={"X-Auth-Token": tenant.token}))
        message = await relay.next_message()
        request = orjson.loads(message.payload)
        assert (message.topic, request["device"], request["data"]["method"]) == ("v1/gateway/rpc", sub, "setGpio")
        await relay.publish("v1/gateway/rpc", orjson.dumps(
            {"device": sub, "id": request["data"]["id"], "data": {"gpio": 4}}))
        async with await call as resp:
            assert (resp.status, orjson.loads(await resp.read())) == (200, {"response": {"gpio": 4}})
    assert notifications == []
    relay.client.disconnect()
    await on_b.close()
