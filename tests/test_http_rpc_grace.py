"""An HTTP device between two RPC long polls (aiohttp as the device, the management API as the
operator): a lightweight call made after one poll was answered answers the device's next poll,
as ThingsBoard keeps it pending for the next RPC subscription, where it used to be 409; a device
that does not poll again within http_rpc_poll_grace_seconds is 409 still."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from fleetgate.app import Gateway
from fleetgate.core.downlink import DELIVERY_TIMEOUT
from tests.conftest import listener_url
from tests.http_rpc_support import command, poll
from tests.support import Tenant, gateway_settings, new_tenant, provision_device, running_gateway

GRACE = 3.0


@pytest.fixture(scope="module")
async def graced(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    settings = gateway_settings(str(tmp_path_factory.mktemp("grace")), http_rpc_poll_grace_seconds=GRACE)
    async with running_gateway(database_url, settings) as running:
        yield running


@pytest.fixture
async def sessions(graced: Gateway) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession, Tenant]]:
    async with aiohttp.ClientSession(listener_url(graced, "http")) as device_http, \
            aiohttp.ClientSession(listener_url(graced, "management")) as management:
        yield device_http, management, await new_tenant(graced.services)


async def test_a_call_made_between_two_polls_answers_the_next_poll(graced: Gateway, sessions) -> None:
    http, management, tenant = sessions
    device = await provision_device(http, graced, tenant, "grace-")
    assert (await poll(http, f"/api/v1/{device.token}/rpc", timeout="100"))[0] == 408
    async with asyncio.timeout(30):
        call = asyncio.ensure_future(command(management, tenant, device.id,
                                             {"method": "setGpio", "params": {"pin": 4}, "timeout": 10_000}))
        # The device polls again later than a connected device's delivery would have taken.
        await asyncio.sleep(DELIVERY_TIMEOUT + 0.5)
        assert not call.done()
        status, body = await poll(http, f"/api/v1/{device.token}/rpc", timeout="10000")
        request = orjson.loads(body)
        assert status == 200 and request == {"id": request["id"], "method": "setGpio", "params": {"pin": 4}}
        async with http.post(f"/api/v1/{device.token}/rpc/{request['id']}", json={"value": 1}) as resp:
            assert resp.status == 200
        assert await call == (200, {"response": {"value": 1}})

        # One-way, the same: 202 once the next poll has it.
        oneway = asyncio.ensure_future(command(management, tenant, device.id, {"method": "blink", "oneway": True}))
        status, body = await poll(http, f"/api/v1/{device.token}/rpc", timeout="10000")
        assert status == 200 and orjson.loads(body)["method"] == "blink"
        assert await oneway == (202, {})


async def test_a_device_that_does_not_poll_again_within_the_grace_is_409(graced: Gateway, sessions) -> None:
    http, management, tenant = sessions
    device = await provision_device(http, graced, tenant, "gone-")
    assert (await poll(http, f"/api/v1/{device.token}/rpc", timeout="100"))[0] == 408
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body = await command(management, tenant, device.id, {"method": "setGpio", "timeout": 30_000})
    assert (status, body["error_code"]) == (409, "IOTDA.014016")
    assert loop.time() - started < GRACE + 2 * DELIVERY_TIMEOUT + 1  # the grace, not the call's 30 s


async def test_a_device_that_never_polled_is_409_at_once(graced: Gateway, sessions) -> None:
    http, management, tenant = sessions
    device = await provision_device(http, graced, tenant, "never-")
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body = await command(management, tenant, device.id, {"method": "setGpio", "timeout": 30_000})
    assert (status, body["error_code"]) == (409, "IOTDA.014016")
    assert loop.time() - started < DELIVERY_TIMEOUT + 1
