"""The live feed's connection limit with aiohttp's WebSocket client, against an authentication that
answers out of order: the connection refused is the one whose connect returned last."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from fleetgate.core.live import LiveHub
from fleetgate.protocols.http.live_ws import LiveLimits, LiveWebSocket
from tests.fakes import LoopbackBus


class GatedTokens:
    """Every token belongs to one project; the first lookup waits until the test lets it go."""

    def __init__(self) -> None:
        self.first_entered = asyncio.Event()
        self.release_first = asyncio.Event()
        self.calls = 0

    async def project_of(self, token: str | None) -> str:
        self.calls += 1
        if self.calls == 1:
            self.first_entered.set()
            await self.release_first.wait()
        return "project"


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, GatedTokens]]:
    tokens = GatedTokens()
    unused: Any = None
    feed = LiveWebSocket(LiveHub(LoopbackBus()), tokens.project_of, unused, unused, unused, unused,
                         LiveLimits(connections_per_token=1, subscriptions_per_connection=1, buffer_updates=1))
    app = web.Application()
    app.add_routes(feed.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", tokens
    await feed.close()
    await runner.cleanup()


async def test_the_connection_past_the_limit_is_the_one_whose_connect_returned_last(served) -> None:
    url, tokens = served
    returned: list[str] = []
    async with aiohttp.ClientSession(url) as session:

        async def connect(name: str) -> aiohttp.ClientWebSocketResponse:
            ws = await session.ws_connect("/api/ws/plugins/telemetry", headers={"X-Auth-Token": "t"})
            returned.append(name)
            return ws

        slow = asyncio.create_task(connect("slow"))
        await tokens.first_entered.wait()
        fast = await connect("fast")
        tokens.release_first.set()
        late = await slow
        assert returned == ["fast", "slow"]

        refused = await late.receive(timeout=5)
        assert refused.type is aiohttp.WSMsgType.CLOSE and refused.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert refused.extra == "at most 1 connections a token"
        assert not fast.closed
        await fast.close()
