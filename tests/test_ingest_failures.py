"""What the HTTP front-end does when the pipeline cannot keep up, the database goes away,
or the gateway is told to stop: push back, acknowledge nothing unstored, lose nothing acknowledged."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from tests.metrics_support import queued
from tests.pg_control import ControlledServer
from tests.support import gateway_settings, new_tenant, provision_token, running_gateway
from tests.telemetry_support import PENDING, writes_blocked

BODY = b'{"a":1,"b":2,"c":3}'


async def post(http: aiohttp.ClientSession, token: str, body: bytes = BODY) -> tuple[int, dict]:
    async with http.post(f"/api/v1/{token}/telemetry", data=body) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def stored_rows(pool, token_device_name: str, project_id: str) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM ts_kv t JOIN devices d ON d.id = t.device_id WHERE d.name = $1 AND d.project_id = $2",
        token_device_name, project_id)


async def test_full_queue_answers_503_with_retry_after_and_keeps_what_it_took(database_url, tmp_path) -> None:
    settings = gateway_settings(str(tmp_path), ingest_queue_rows=4)
    async with running_gateway(database_url, settings) as gw, aiohttp.ClientSession(gw.listeners[0].url) as http:
        tenant = await new_tenant(gw.services)
        token = await provision_token(http, tenant, "pushed-back")
        async with writes_blocked(database_url):
            waiting = asyncio.ensure_future(post(http, token))
            await queued(gw, 3)
            done, _ = await asyncio.wait([waiting], timeout=PENDING)
            assert not done, "acknowledged before it was stored"
            status, headers = await post(http, token)
            assert status == 503
            assert int(headers["Retry-After"]) >= 1
        assert (await waiting)[0] == 200
        assert await stored_rows(gw.services.pool, "pushed-back", tenant.project_id) == 3


async def test_database_outage_acknowledges_nothing_then_stores_everything(tmp_path) -> None:
    server = ControlledServer(tmp_path / "db")
    settings = gateway_settings(str(tmp_path), db_retry_max_seconds=0.2)
    async with running_gateway(server.url, settings) as gw, aiohttp.ClientSession(gw.listeners[0].url) as http:
        tenant = await new_tenant(gw.services)
        token = await provision_token(http, tenant, "outage")
        assert (await post(http, token, b'{"ts":1767225600000,"values":{"before":1}}'))[0] == 200

        await server.stop("immediate")
        bodies = [orjson.dumps({"ts": 1767225600000 + i, "values": {"during": i}}) for i in range(20)]
        requests = [asyncio.ensure_future(post(http, token, body)) for body in bodies]
        done, _ = await asyncio.wait(requests, timeout=PENDING)
        assert not done, "acknowledged while PostgreSQL was down"

        await server.start()
        assert [status for status, _ in await asyncio.gather(*requests)] == [200] * 20
        assert await stored_rows(gw.services.pool, "outage", tenant.project_id) == 21
    await server.stop("fast")


async def test_stop_drains_in_flight_messages_and_refuses_new_connections(database_url, tmp_path) -> None:
    settings = gateway_settings(str(tmp_path))
    gateway_cm = running_gateway(database_url, settings)
    gw = await gateway_cm.__aenter__()
    url = gw.listeners[0].url
    try:
        async with aiohttp.ClientSession(url) as http:
            tenant = await new_tenant(gw.services)
            token = await provision_token(http, tenant, "drained")
            async with writes_blocked(database_url):
                requests = [asyncio.ensure_future(post(http, token, orjson.dumps({"ts": 1767225600000 + i, "values": {"k": i}})))
                            for i in range(10)]
                await queued(gw, 10)
                done, _ = await asyncio.wait(requests, timeout=PENDING)
                assert not done
                stopping = asyncio.ensure_future(gw.stop())
                done, _ = await asyncio.wait([stopping], timeout=PENDING)
                assert not done, "stopped before draining"
                async with aiohttp.ClientSession(url) as fresh:
                    try:
                        await post(fresh, token)
                        raise AssertionError("a new connection was accepted while stopping")
                    except aiohttp.ClientConnectionError:
                        pass
            assert [s for s, _ in await asyncio.gather(*requests)] == [200] * 10
            await stopping
        async with running_gateway(database_url, settings) as again:
            assert await stored_rows(again.services.pool, "drained", tenant.project_id) == 10
    finally:
        await gateway_cm.__aexit__(None, None, None)
