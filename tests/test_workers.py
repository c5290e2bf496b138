"""``iot-gateway serve --workers 2`` as an operator runs it: two real worker processes sharing the
ports, metrics and health covering both, downlink through the worker that does not hold the
device, restart of a worker that dies, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiocoap
import aiohttp
import orjson
import pytest

from fleetgate.storage_wiring import open_services
from fleetgate.protocols.mqtt.packets import Publish, Subscribe, Subscription
from tests.mqtt_raw import RawMqtt
from tests.support import TEST_SECRETS_KEY, free_port, gateway_settings, new_tenant, read_until, stop_child

ROOT = Path(__file__).resolve().parent.parent
_SERIES = re.compile(r'gateway_connections\{pid="(\d+)",protocol="mqtt"\} ([0-9.]+)')


@pytest.fixture(scope="module")
async def workers(database_url, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("workers")
    ports = {name: free_port() for name in ("http", "management", "mqtt", "coap")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetgate", "serve", "--workers", "2", "--data-dir", str(data_dir),
        "--database-url", database_url, "--host", "127.0.0.1", "--http-port", str(ports["http"]),
        "--management-port", str(ports["management"]), "--mqtt-port", str(ports["mqtt"]), "--https-port", "0",
        "--mqtts-port", "0", "--coap-port", str(ports["coap"]), "--batch-max-age-ms", "2",
        "--secrets-key-file", TEST_SECRETS_KEY, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        lines = await read_until(process, "management:")
        # The workers' data dir: the key sealing provision secrets is there.
        services = await open_services(database_url, 2, gateway_settings(str(data_dir)))
        try:
            yield process, ports, services, lines
        finally:
            await services.pool.close()
    finally:
        await stop_child(process)


async def provision(ports, tenant, name: str) -> str:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{ports['http']}") as http, http.post(
            "/api/v1/provision", json={"deviceName": name, "provisionDeviceKey": tenant.provision_key,
                                       "provisionDeviceSecret": tenant.provision_secret}) as resp:
        body = await resp.read()
        assert resp.status == 200, (resp.status, body)
        return orjson.loads(body)["credentialsValue"]


async def connections_by_worker(ports) -> dict[int, float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{ports['management']}/metrics") as r:
        text = await r.text()
    return {int(pid): float(value) for pid, value in _SERIES.findall(text)}


async def management_session(ports, wanted: Callable[[int], bool]) -> aiohttp.ClientSession:
    """One keep-alive management connection served by a worker ``wanted`` accepts (its
    /healthz says which worker it is): SO_REUSEPORT picks the worker by the connection's hash."""
    for _ in range(50):
        session = aiohttp.ClientSession(f"http://127.0.0.1:{ports['management']}",
                                        connector=aiohttp.TCPConnector(limit=1))
        async with session.get("/healthz") as resp:
            health = await resp.json()
        if wanted(health["workers"]["this"]):
            assert health["status"] == "ok" and health["workers"]["running"] == 2
            return session
        await session.close()
    pytest.fail("50 management connections all went to the other worker")


async def test_listeners_are_printed_once_for_both_workers(workers) -> None:
    _, ports, _, lines = workers
    assert re.fullmatch(r"workers: 2 \(pids \d+, \d+\)", lines[-5]), lines
    assert lines[-4:] == [f"http: http://127.0.0.1:{ports['http']}", f"mqtt: mqtt://127.0.0.1:{ports['mqtt']}",
                          f"coap: coap://127.0.0.1:{ports['coap']}",
                          f"management: http://127.0.0.1:{ports['management']}"]


async def test_rpc_through_the_worker_that_does_not_hold_the_device(workers) -> None:
    _, ports, services, _ = workers
    tenant = await new_tenant(services)
    token = await provision(ports, tenant, "rpc-device")
    device_id = await services.pool.fetchval("SELECT id FROM devices WHERE name = 'rpc-device' AND project_id = $1",
                                             tenant.project_id)
    client = await RawMqtt.open(ports["mqtt"])
    try:
        assert (await client.connect(token)).reason_code == 0
        await client.send(Subscribe(1, (Subscription("v1/devices/me/rpc/request/+", 0),)))
        await client.packet()  # SUBACK
        holder = [pid for pid, open_ in (await connections_by_worker(ports)).items() if open_ == 1]
        assert len(holder) == 1
        session = await management_session(ports, lambda pid: pid != holder[0])
        async with session:
            operator = asyncio.ensure_future(session.post(
                f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands", headers={"X-Auth-Token": tenant.token},
                json={"method": "ping", "params": {"n": 1}, "timeout": 5000}))
            request = await client.packet(timeout=10)
            assert orjson.loads(request.payload) == {"method": "ping", "params": {"n": 1}}
            await client.send(Publish(f"v1/devices/me/rpc/response/{request.topic.rsplit('/', 1)[1]}",
                                      orjson.dumps({"pong": 1})))
            async with await operator as resp:
                assert resp.status == 200 and await resp.json() == {"response": {"pong": 1}}
    finally:
        await client.close()


async def test_coap_telemetry_and_rpc_through_either_worker(workers) -> None:
    """CoAP's UDP port is shared too: the kernel keeps each client socket on one worker, and an
    operator's RPC reaches the device's observation through whichever worker serves the call."""
    _, ports, services, _ = workers
    tenant = await new_tenant(services)
    tokens = [await provision(ports, tenant, f"coap-{i}") for i in range(8)]
    base = f"coap://127.0.0.1:{ports['coap']}/api/v1"
    clients = [await aiocoap.Context.create_client_context(transports=["udp6"]) for _ in tokens]
    try:
        async with asyncio.timeout(30):
            for client, token in zip(clients, tokens, strict=True):  # 8 source ports: both workers
                answer = await client.request(aiocoap.Message(
                    code=aiocoap.POST, uri=f"{base}/{token}/telemetry", payload=b'{"t":1}')).response
                assert answer.code == aiocoap.CREATED
            device_id = await services.pool.fetchval(
                "SELECT id FROM devices WHERE name = 'coap-0' AND project_id = $1", tenant.project_id)
            observed = clients[0].request(aiocoap.Message(code=aiocoap.GET, uri=f"{base}/{tokens[0]}/rpc", observe=0))
            assert (await observed.response).code == aiocoap.CONTENT
            notifications = aiter(observed.observation)
            pids: set[int] = set()
            for n in range(2):  # one call through each worker: one of them does not hold the observation
                session = await management_session(ports, lambda pid: pid not in pids)
                async with session, session.get("/healthz") as health:
                    pids.add((await health.json())["workers"]["this"])
                    call = asyncio.ensure_future(session.post(
                        f"/v5/iot/{tenant.project_id}/devices/{device_id}/commands",
                        headers={"X-Auth-Token": tenant.token}, json={"method": "ping", "params": n, "timeout": 5000}))
                    pushed = orjson.loads((await anext(notifications)).payload)
                    assert pushed["method"] == "ping" and pushed["params"] == n
                    reply = await clients[0].request(aiocoap.Message(
                        code=aiocoap.POST, uri=f"{base}/{tokens[0]}/rpc/{pushed['id']}", payload=b'{"pong":1}')).response
                    assert reply.code == aiocoap.CREATED
                    async with await call as resp:
                        assert resp.status == 200 and await resp.json() == {"response": {"pong": 1}}
            assert len(pids) == 2
            observed.observation.cancel()
    finally:
        for client in clients:
            await client.shutdown()
    stored = await services.pool.fetchval(
        "SELECT count(*) FROM ts_kv WHERE device_id IN (SELECT id FROM devices WHERE project_id = $1)",
        tenant.project_id)
    assert stored == len(tokens)


async def test_metrics_cover_both_workers(workers) -> None:
    _, ports, services, _ = workers
    tenant = await new_tenant(services)
    tokens = [await provision(ports, tenant, f"m-{i}") for i in range(16)]
    clients = [await RawMqtt.open(ports["mqtt"]) for _ in tokens]
    try:
        for client, token in zip(clients, tokens, strict=True):
            assert (await client.connect(token)).reason_code == 0
        by_worker = await connections_by_worker(ports)
        # 16 connections hashed over two workers: all on one has odds of 1 in 32,768.
        assert len(by_worker) == 2 and sum(by_worker.values()) == 16 and all(by_worker.values()), by_worker
        for i, client in enumerate(clients):
            await client.send(Publish("v1/devices/me/telemetry", b'{"t":1}', qos=1, packet_id=i + 1))
            assert (await client.packet()).packet_id == i + 1  # PUBACK: stored
    finally:
        for client in clients:
            await client.close()
    # Each worker writes its message tallies to the shared files every second.
    pattern = re.compile(r'gateway_messages_total\{kind="telemetry",protocol="mqtt"\} ([0-9.]+)')
    async with aiohttp.ClientSession() as http:
        for _ in range(100):  # bounded: ten seconds, ten of those writes
            async with http.get(f"http://127.0.0.1:{ports['management']}/metrics") as r:
                found = pattern.findall(await r.text())
            if found and float(found[0]) >= 16:
                break
            await asyncio.sleep(0.1)
    assert found and float(found[0]) >= 16


async def test_a_worker_that_dies_is_restarted_and_sigterm_exits_0(workers) -> None:
    process, ports, _, _ = workers
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{ports['management']}/healthz") as r:
        pids = (await r.json())["workers"]["pids"]
    os.kill(pids[0], signal.SIGKILL)  # a worker this test's supervisor started
    # The supervisor logs the restart; /healthz reports it once the new worker is up.
    async with aiohttp.ClientSession() as http:
        for _ in range(100):  # bounded: ten seconds (the first back-off is one)
            async with http.get(f"http://127.0.0.1:{ports['management']}/healthz") as r:
                health = await r.json()
            if health["workers"]["restarts"] == 1 and health["status"] == "ok":
                break
            await asyncio.sleep(0.1)
    assert health["workers"]["running"] == 2 and pids[0] not in health["workers"]["pids"], health
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        assert await process.wait() == 0
