"""At least once, end to end: 20 devices over MQTT, HTTP and CoAP, every stored point received by a
local HTTP receiver (checked by device, key and timestamp), through a 30 s outage of the receiver
and through a SIGKILL of the gateway process; duplicates counted. Waits are on conditions: the
only sleep is the outage itself."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from tests.forwarding_fleet import Fleet, stored_points
from tests.forwarding_support import Receiver, points
from tests.process import GatewayProcess
from tests.support import free_port, gateway_settings, new_tenant, running_gateway

PROTOCOLS = ["mqtt"] * 7 + ["http"] * 7 + ["coap"] * 6
OUTAGE_SECONDS = 30


async def http_rule(gateway_services, tenant, url: str) -> str:
    """An active device.property/report rule with an HTTP action to ``url``; the action's id."""
    rules = gateway_services
    rule = await rules.create_rule(tenant.project_id, name="all", description=None, resource="device.property",
                                   event="report", active=True)
    action = await rules.create_action(tenant.project_id, rule.id, "HTTP_FORWARDING",
                                       {"url": url, "signature_enable": True, "token": "k"})
    return action.id


def urls_of(gateway) -> dict[str, str]:
    return {listener.name: listener.url for listener in gateway.listeners}


async def all_received(receiver: Receiver, pool, fleet: Fleet, timeout: float = 120) -> set:
    stored = await stored_points(pool, [d.id for d in fleet.devices])
    await receiver.wait_for(lambda: stored <= set(points(receiver.notifications)), timeout)
    return stored


@pytest.fixture
async def forwarding_gateway(database_url, tmp_path):
    # Retried at most 2 s apart, and never dead-lettered within the outage.
    settings = gateway_settings(str(tmp_path), forwarding_retry_max_seconds=2.0, forwarding_max_attempts=1000)
    async with running_gateway(database_url, settings) as gw:
        yield gw


async def test_every_stored_point_reaches_the_receiver(forwarding_gateway, gateway) -> None:
    gw = forwarding_gateway
    tenant = await new_tenant(gw.services)
    receiver = Receiver(secret="k")
    await receiver.start()
    try:
        await http_rule(gw._forwarding.rules, tenant, receiver.url)  # noqa: SLF001
        fleet = Fleet(urls_of(gw))
        await fleet.provision(gw.services.pool, tenant, PROTOCOLS)
        fleet.start()
        await receiver.wait_for(lambda: len(receiver.notifications) >= 200)
        await fleet.stop()
        stored = await all_received(receiver, gw.services.pool, fleet)
        assert len(stored) == fleet.acked and {d.protocol for d in fleet.devices if d.acked} == {"mqtt", "http", "coap"}
        received = points(receiver.notifications)
        assert set(received) == stored and receiver.bad_signatures == 0
        assert sum(n - 1 for n in received.values()) == 0  # no failure, no repeat
    finally:
        await receiver.stop()


async def test_a_receiver_down_for_30_s_loses_nothing(forwarding_gateway) -> None:
    gw = forwarding_gateway
    tenant = await new_tenant(gw.services)
    receiver = Receiver(secret="k")
    await receiver.start()
    try:
        action_id = await http_rule(gw._forwarding.rules, tenant, receiver.url)  # noqa: SLF001
        fleet = Fleet(urls_of(gw))
        await fleet.provision(gw.services.pool, tenant, PROTOCOLS)
        fleet.start()
        await receiver.wait_for(lambda: len(receiver.notifications) >= 100)
        await receiver.stop()
        before = len(receiver.notifications)
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage: the devices go on sending, acknowledged as stored
        backlog = (await gw._forwarding.store.backlog())[action_id].count  # noqa: SLF001
        await receiver.start()
        await fleet.stop()
        stored = await all_received(receiver, gw.services.pool, fleet)
        received = points(receiver.notifications)
        assert set(received) == stored
        assert len(receiver.notifications) - before >= backlog > 0
        duplicates = sum(n - 1 for n in received.values())
        print(f"outage: {len(stored)} points, backlog {backlog} at the end of the outage, {duplicates} duplicates")
        assert duplicates == 0
        store = gw._forwarding.store  # noqa: SLF001
        await gw._forwarding.forwarder.check_backlog()  # noqa: SLF001
        assert (await store.backlog()).get(action_id) is None  # drained
    finally:
        await receiver.stop()


async def test_sigkill_of_the_gateway_loses_nothing(database_url, gateway, tmp_path) -> None:
    tenant = await new_tenant(gateway.services)
    receiver = Receiver(secret="k")
    await receiver.start()
    ports = {"http_port": free_port(), "mqtt_port": free_port(), "management_port": free_port()}
    settings = {**ports, "forwarding_lease_seconds": 2, "forwarding_retry_max_seconds": 2, "batch_max_age_ms": 2}
    first = await GatewayProcess.start(database_url, str(tmp_path / "a"), **settings)
    second = None
    try:
        await http_rule(gateway._forwarding.rules, tenant, receiver.url)  # noqa: SLF001
        urls = {"http": f"http://127.0.0.1:{ports['http_port']}", "mqtt": f"mqtt://127.0.0.1:{ports['mqtt_port']}"}
        fleet = Fleet(urls)
        await fleet.provision(gateway.services.pool, tenant, ["http"] * 10 + ["mqtt"] * 10)
        fleet.start()
        await receiver.wait_for(lambda: len(receiver.notifications) >= 300)
        await first.kill()
        second = await GatewayProcess.start(database_url, str(tmp_path / "b"), **settings)
        acked = fleet.acked
        await receiver.wait_for(lambda: fleet.acked >= acked + 300, timeout=60)
        await fleet.stop()
        stored = await all_received(receiver, gateway.services.pool, fleet)
        received = points(receiver.notifications)
        assert set(received) == stored
        duplicates = sum(n - 1 for n in received.values())
        repeated_requests = sum(n - 1 for n in receiver.message_ids.values())
        print(f"SIGKILL: {len(stored)} points, {duplicates} delivered twice ({repeated_requests} repeated ids)")
        # The at-least-once window: what the killed process had sent without recording it, at most
        # one batch a worker (4 workers of 200).
        assert duplicates == repeated_requests <= 4 * 200
    finally:
        await first.kill()
        if second is not None:
            await second.stop()
        await receiver.stop()
