"""A local HTTP receiver for forwarding tests: an aiohttp server on a fixed loopback port that can be
stopped and started again, keeping what it received; waits are on conditions, never on sleeps."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from tests.support import free_port


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
