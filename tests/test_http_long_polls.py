"""ThingsBoard's HTTP RPC and attribute long polls (protocols.http.long_polls): the polls against a
real downlink in memory, then end to end with aiohttp's client, the management API and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from fleetgate.app import Gateway
from fleetgate.core import metrics
from fleetgate.core.device_channel import DeviceChannel, SessionLimits
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import InvalidInput
from fleetgate.core.model import DeviceIdentity
from fleetgate.protocols.http.long_polls import Feed, LongPolls, poll_timeout
from fleetgate.protocols.http.wire import Reply
from tests.conftest import listener_url
from tests.http_rpc_support import command, poll, watch_polls
from tests.support import (
    ProvisionedDevice, Tenant, gateway_settings, new_tenant, provision_device, running_gateway,
)

TIMEOUT = 20.0
DEVICE = DeviceIdentity("d1", "p1", "prod1", "meter")


# --- the polls, on a downlink in memory ---------------------------------------------------------


class Channels:
    """The device service's attach and detach, onto a real downlink, remembered."""

    def __init__(self) -> None:
        self.downlink = Downlink(SessionLimits(1024, 7))
        self.log: list[tuple[str, str, str]] = []

    def attach(self, device: DeviceIdentity, channel: DeviceChannel, protocol: str = "mqtt") -> None:
        self.downlink.attach(device.device_id, channel)
        self.log.append(("attach", device.device_id, protocol))

    def detach(self, device: DeviceIdentity, channel: DeviceChannel, protocol: str = "mqtt", *,
               linger: float = 0.0) -> None:
        self.downlink.detach(device.device_id, channel, linger)
        self.log.append(("detach", device.device_id, protocol))

    def rpc_listening(self, device: DeviceIdentity, channel: DeviceChannel) -> None:
        self.downlink.listen_rpc(device.device_id, channel)


def polls_of(max_polls: int = 10) -> tuple[LongPolls, Channels]:
    channels = Channels()
    return LongPolls(channels, max_polls), channels  # type: ignore[arg-type]


async def answer(outcome: Reply | asyncio.Future[Reply]) -> Reply:
    assert isinstance(outcome, asyncio.Future), outcome
    async with asyncio.timeout(TIMEOUT):
        return await outcome


def test_the_timeout_follows_thingsboard() -> None:
    assert poll_timeout({}) == poll_timeout({"timeout": "0"}) == 60.0  # transport.http.request_timeout
    assert poll_timeout({"timeout": "1500"}) == 1.5
    assert poll_timeout({"timeout": "30000.0"}) == 30.0
    assert poll_timeout({"timeout": "900000"}) == 300.0  # transport.http.max_request_timeout
    for bad in ("abc", "-1", "nan", "inf", "1e999", "0x10"):
        with pytest.raises(InvalidInput):
            poll_timeout({"timeout": bad})


async def test_an_rpc_poll_is_answered_by_the_first_call_and_detached() -> None:
    polls, channels = polls_of()
    future = polls.open(DEVICE, Feed.RPC, b'{"timeout":"20000"}')
    assert channels.downlink.connected("d1") and channels.log == [("attach", "d1", "http")]
    channels.downlink.receive({"t": "attributes", "d": "d1", "u": {"mode": "eco"}})  # not what it waits for
    assert isinstance(future, asyncio.Future) and not future.done()
    channels.downlink.receive({"t": "rpc", "d": "d1", "i": 7, "m": "reboot", "p": {"delay": 1}})
    reply = await answer(future)
    assert (reply.status, orjson.loads(reply.body)) == (200, {"id": 7, "method": "reboot", "params": {"delay": 1}})
    assert not channels.downlink.connected("d1") and channels.log[-1] == ("detach", "d1", "http")
    assert len(polls) == 0
    await channels.downlink.close()  # it tells the bus the call was delivered


async def test_an_attribute_poll_is_answered_by_an_update() -> None:
    polls, channels = polls_of()
    future = polls.open(DEVICE, Feed.ATTRIBUTES, b"{}")
    channels.downlink.receive({"t": "rpc", "d": "d1", "i": 7, "m": "reboot", "p": None})
    assert isinstance(future, asyncio.Future) and not future.done()
    channels.downlink.receive({"t": "attributes", "d": "d1", "u": {"mode": "eco", "deleted": ["old"]}})
    reply = await answer(future)
    assert orjson.loads(reply.body) == {"mode": "eco", "deleted": ["old"]}
    await channels.downlink.close()


async def test_a_poll_times_out_with_408_and_is_detached() -> None:
    polls, channels = polls_of()
    reply = await answer(polls.open(DEVICE, Feed.RPC, b'{"timeout":"1"}'))
    assert (reply.status, reply.body) == (408, b"")
    assert [entry[0] for entry in channels.log] == ["attach", "detach"] and len(polls) == 0


async def test_polls_are_bounded_and_a_malformed_timeout_is_refused() -> None:
    polls, channels = polls_of(max_polls=1)
    first = polls.open(DEVICE, Feed.RPC, b"{}")
    refused = polls.open(DEVICE, Feed.ATTRIBUTES, b"{}")
    assert isinstance(refused, Reply) and refused.status == 429 and ("Retry-After", "1") in refused.headers
    bad = polls.open(DEVICE, Feed.RPC, b'{"timeout":"soon"}')
    assert isinstance(bad, Reply) and bad.status == 400
    assert channels.log == [("attach", "d1", "http")]
    # Abandoned (its connection closed): detached at once, and its place is free again.
    polls.abandon(first)  # type: ignore[arg-type]
    assert first.cancelled() and channels.log[-1] == ("detach", "d1", "http")  # type: ignore[union-attr]
    last = polls.open(DEVICE, Feed.RPC, b"{}")
    polls.close()  # the gateway stops: every open poll is answered
    stopping = await answer(last)
    assert stopping.status == 503 and ("Retry-After", "1") in stopping.headers
    assert len(polls) == 0 and not channels.downlink.connected("d1")


async def test_abandoning_a_future_of_no_poll_changes_nothing() -> None:
    polls, channels = polls_of()
    other: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    polls.abandon(other)
    assert not other.done() and channels.log == []


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def opened(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> defaultdict[str, asyncio.Event]:
    """Set for a device once one of its HTTP long polls is attached to the downlink."""
    return watch_polls(gateway, monkeypatch)


async def device_status(management: aiohttp.ClientSession, tenant: Tenant, device_id: str) -> str:
    async with management.get(f"/v5/iot/{tenant.project_id}/devices/{device_id}",
                              headers={"X-Auth-Token": tenant.token}) as resp:
        return str(orjson.loads(await resp.read())["status"])


async def test_an_rpc_poll_receives_an_operators_call_and_the_reply_reaches_the_operator(
        gateway, http, management, tenant, opened) -> None:
    device = await provision_device(http, gateway, tenant, "rpc-")
    async with asyncio.timeout(TIMEOUT):
        waiting = asyncio.ensure_future(poll(http, f"/api/v1/{device.token}/rpc", timeout="15000"))
        await opened[device.id].wait()
        # Polling, the device is connected: for the downlink and for its status.
        await gateway.presence.flush()
        assert await device_status(management, tenant, device.id) == "ONLINE"
        call = asyncio.ensure_future(command(management, tenant, device.id,
                                             {"method": "setGpio", "params": {"pin": 4}, "timeout": 10_000}))
        status, body = await waiting
        request = orjson.loads(body)
        assert status == 200 and request == {"id": request["id"], "method": "setGpio", "params": {"pin": 4}}
        async with http.post(f"/api/v1/{device.token}/rpc/{request['id']}", json={"pin": 4, "value": 1}) as resp:
            assert resp.status == 200
        assert await call == (200, {"response": {"pin": 4, "value": 1}})


async def test_a_poll_with_a_token_already_known_is_answered_too(gateway, http, tenant, management, opened) -> None:
    """The first request of a token is authenticated in a task (the test above); later ones from
    the token cache, and the poll is then waited on by its future alone."""
    device = await provision_device(http, gateway, tenant, "rpc-")
    async with asyncio.timeout(TIMEOUT):
        assert await poll(http, f"/api/v1/{device.token}/rpc", timeout="1") == (408, b"")
        assert gateway._device_service.cached_token(device.token) is not None
        opened[device.id].clear()
        waiting = asyncio.ensure_future(poll(http, f"/api/v1/{device.token}/rpc"))
        await opened[device.id].wait()
        assert await command(management, tenant, device.id, {"method": "ping", "oneway": True}) == (202, {})
        status, body = await waiting
        assert status == 200 and orjson.loads(body)["method"] == "ping"


async def test_a_poll_times_out_with_408(gateway, http, tenant) -> None:
    device = await provision_device(http, gateway, tenant, "rpc-")
    async with asyncio.timeout(TIMEOUT):
        assert await poll(http, f"/api/v1/{device.token}/rpc", timeout="200") == (408, b"")
        assert await poll(http, f"/api/v1/{device.token}/attributes/updates", timeout="200") == (408, b"")
    assert not gateway._downlink.connected(device.id)


@pytest.mark.parametrize("timeout", ["abc", "-5", "1e999"])
async def test_a_timeout_that_is_not_a_number_is_400(gateway, http, tenant, timeout) -> None:
    device = await provision_device(http, gateway, tenant, "rpc-")
    status, body = await poll(http, f"/api/v1/{device.token}/rpc", timeout=timeout)
    assert status == 400 and b"timeout" in body


async def test_a_poll_with_an_unknown_token_is_401(http) -> None:
    assert await poll(http, f"/api/v1/unknown-{secrets.token_hex(8)}/rpc", timeout="100") == (401, b"")


async def test_shared_attribute_updates_arrive(gateway, http, management, tenant, opened) -> None:
    device = await provision_device(http, gateway, tenant, "rpc-")
    async with asyncio.timeout(TIMEOUT):
        waiting = asyncio.ensure_future(poll(http, f"/api/v1/{device.token}/attributes/updates", timeout="15000"))
        await opened[device.id].wait()
        async with management.post(f"/v5/iot/{tenant.project_id}/devices/{device.id}/attributes",
                                   params={"scope": "SHARED_SCOPE"}, json={"mode": "eco", "target": 21.5},
                                   headers={"X-Auth-Token": tenant.token}) as resp:
            assert resp.status == 200, await resp.text()
        status, body = await waiting
        assert (status, orjson.loads(body)) == (200, {"mode": "eco", "target": 21.5})


async def test_client_side_rpc(http, gateway, tenant) -> None:
    device = await provision_device(http, gateway, tenant, "rpc-")
    path = f"/api/v1/{device.token}/rpc"
    async with http.post(path, json={"method": "getSessionLimits", "params": {}}) as resp:
        assert resp.status == 200
        limits = orjson.loads(await resp.read())
    assert set(limits) == {"maxPayloadSize", "maxInflightMessages", "rateLimits"}
    assert limits["maxPayloadSize"] == 65_536
    async with http.post(path, json={"method": "reboot"}) as resp:
        assert (resp.status, orjson.loads(await resp.read())) == (200, {"error": "Unsupported RPC method: reboot"})
    async with http.post(path, data=b"[1]") as resp:
        assert resp.status == 400


async def test_a_reply_nobody_waits_for_is_dropped(http, gateway, tenant) -> None:
    device = await provision_device(http, gateway, tenant, "rpc-")
    async with http.post(f"/api/v1/{device.token}/rpc/12345", json={"late": True}) as resp:
        assert resp.status == 200
    async with http.post(f"/api/v1/{device.token}/rpc/12345", data=b"{") as resp:
        assert resp.status == 400


@pytest.fixture
async def bounded(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    """A gateway of the test's own that holds one long poll at a time."""
    settings = gateway_settings(str(tmp_path_factory.mktemp("polls")), http_max_long_polls=1)
    async with running_gateway(database_url, settings) as running:
        yield running


async def test_polls_are_bounded_and_a_closed_poll_frees_its_place(
        bounded: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = watch_polls(bounded, monkeypatch)
    service = bounded._device_service
    detached = asyncio.Event()
    detach: Callable[..., None] = service.detach

    def watched(device: DeviceIdentity, channel: DeviceChannel, protocol: str = "mqtt", **kwargs: Any) -> None:
        detach(device, channel, protocol, **kwargs)
        if protocol == "http":
            detached.set()

    monkeypatch.setattr(service, "detach", watched)
    tenant = await new_tenant(bounded.services)
    refusals = metrics.LIMIT_REFUSALS.labels("http", "TooManyLongPolls")
    before = refusals._value.get()
    base_url = listener_url(bounded, "http")
    async with asyncio.timeout(TIMEOUT), aiohttp.ClientSession(base_url) as http:
        device: ProvisionedDevice = await provision_device(http, bounded, tenant, "rpc-")
        async with aiohttp.ClientSession(base_url) as first:
            waiting = asyncio.ensure_future(poll(first, f"/api/v1/{device.token}/rpc", timeout="60000"))
            await opened[device.id].wait()
            async with http.get(f"/api/v1/{device.token}/attributes/updates") as resp:
                assert resp.status == 429 and resp.headers["Retry-After"] == "1"
            assert refusals._value.get() == before + 1
            waiting.cancel()
        # The first poll's connection is closed: its poll is detached at once, not at its timeout.
        await detached.wait()
        assert not bounded._downlink.connected(device.id)
        assert await poll(http, f"/api/v1/{device.token}/rpc", timeout="100") == (408, b"")


async def test_waiting_polls_are_answered_when_the_gateway_stops(
        database_url: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = Gateway(gateway_settings(str(tmp_path_factory.mktemp("stopping"))), database_url)
    await gateway.start()
    stopping: asyncio.Future[None] | None = None
    try:
        opened = watch_polls(gateway, monkeypatch)
        tenant = await new_tenant(gateway.services)
        async with asyncio.timeout(TIMEOUT), aiohttp.ClientSession(listener_url(gateway, "http")) as http:
            device = await provision_device(http, gateway, tenant, "rpc-")
            waiting = asyncio.ensure_future(poll(http, f"/api/v1/{device.token}/rpc"))
            await opened[device.id].wait()
            stopping = asyncio.ensure_future(gateway.stop())
            status, body = await waiting
            assert (status, body) == (503, b"The gateway is shutting down")
    finally:
        await (stopping if stopping is not None else gateway.stop())
