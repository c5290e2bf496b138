"""A local HTTP receiver for forwarding tests: an aiohttp server on a fixed loopback port that can be
stopped and started again, keeping what it received; waits are on conditions, never on sleeps."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from aiohttp import web

from fleetgate.storage_wiring import Services, open_services
from fleetgate.core.forwarding_rules import RuleService
from fleetgate.forwarding_runtime import channels
from fleetgate.storage.forwarding import ForwardingStore
from tests.forwarding_fleet import Fleet, stored_points
from tests.management_client import Management
from tests.support import free_port, gateway_settings


class Receiver:
    def __init__(self, secret: str | None = None) -> None:
        self.port = free_port()
        self.secret = secret
        self.notifications: list[dict[str, Any]] = []
        self.message_ids: Counter[str] = Counter()
        self.bad_signatures = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/push"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/push", self._push)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _push(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", ""), expected):
                self.bad_signatures += 1
                return web.Response(status=401)
        data = orjson.loads(body)
        async with self._changed:
            self.message_ids[request.headers.get("X-Message-Id", "")] += 1
            self.notifications.extend(data if isinstance(data, list) else [data])
            self._changed.notify_all()
        return web.Response(status=200)

    async def wait_for(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(done)


def points(notifications: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    """(device id, key, event time) of every property a list of property reports carries, counted."""
    found: Counter[tuple[str, str, str]] = Counter()
    for n in notifications:
        if n.get("resource") != "device.property":
            continue
        device = n["notify_data"]["header"]["device_id"]
        for service in n["notify_data"]["body"]["services"]:
            for key in service["properties"]:
                found[(device, key, service["event_time"])] += 1
    return found


@asynccontextmanager
async def own_database(database_url: str) -> AsyncIterator[tuple[str, Services]]:
    """A database of its own on the tests' PostgreSQL (migrated), with the services over it: every
    gateway process on a database forwards its rules, so a test whose timing matters keeps the
    session's gateway out of its deliveries."""
    name = "fwd_" + secrets.token_hex(6)
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(database_url)._replace(path="/" + name))
    services = await open_services(url, 4, gateway_settings(tempfile.gettempdir()))
    try:
        yield url, services
    finally:
        await services.pool.close()


def rule_service(services: Services) -> RuleService:
    """Rules managed straight on a database (what the management API calls), with no forwarder."""
    store = ForwardingStore(services.pool)
    return RuleService(store, store, channels())


async def forward(api: Management, url: str, *, resource: str = "device.property", event: str = "report",
                  where: str | None = None, select: str | None = None, **http: Any) -> tuple[str, str]:
    """An active rule with one HTTP action: (rule id, action id)."""
    rule: dict[str, Any] = {"rule_name": "r-" + secrets.token_hex(3), "subject": {"resource": resource, "event": event},
                            "app_type": "GLOBAL"}
    if where is not None:
        rule["where"] = where
    if select is not None:
        rule["select"] = select
    created = await api.call("POST", "/routing-rule/rules", json=rule)
    assert created.status == 201, created
    rule_id = created.body["rule_id"]
    detail = {"url": url, "signature_enable": True, "token": "s3cret", **http}
    action = await api.call("POST", "/routing-rule/actions", json={
        "rule_id": rule_id, "channel": "HTTP_FORWARDING", "channel_detail": {"http_forwarding": detail}})
    assert action.status == 201, action
    activated = await api.call("PUT", f"/routing-rule/rules/{rule_id}", json={"active": True})
    assert activated.status == 200 and activated.body["active"] is True
    return rule_id, action.body["action_id"]


async def http_rule(rules: RuleService, tenant: Any, url: str) -> str:
    """An active device.property/report rule with an HTTP action to ``url``; the action's id."""
    rule = await rules.create_rule(tenant.project_id, name="all", description=None, resource="device.property",
                                   event="report", active=True)
    action = await rules.create_action(tenant.project_id, rule.id, "HTTP_FORWARDING",
                                       {"url": url, "signature_enable": True, "token": "k"})
    return action.id


async def all_received(receiver: Receiver, pool: Any, fleet: Fleet, timeout: float = 120) -> set:
    """Once the receiver has every point the fleet's devices stored: those points."""
    stored = await stored_points(pool, [d.id for d in fleet.devices])
    await receiver.wait_for(lambda: stored <= set(points(receiver.notifications)), timeout)
    return stored
