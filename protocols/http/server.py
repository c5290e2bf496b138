"""The aiohttp application and its listeners."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import metrics

Health = Callable[[], tuple[bool, dict[str, Any]]]


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    health = request.app[HEALTH]
    if health is None:
        return web.json_response({"status": "ok"})
    ok, details = health()
    return web.json_response({"status": "ok" if ok else "degraded", **details}, status=200 if ok else 503)


MAX_PAYLOAD_BYTES = web.AppKey("max_payload_bytes", int)
HEALTH = web.AppKey("health", object)


def build_app(routes: Iterable[web.RouteDef], max_payload_bytes: int, health: Health | None = None) -> web.Application:
    """``health``: what /healthz reports beyond this process being up (workers: all of them)."""
    app = web.Application(client_max_size=max_payload_bytes)
    app[MAX_PAYLOAD_BYTES] = max_payload_bytes
    app[HEALTH] = health
    app.add_routes([*routes, web.get("/metrics", _metrics), web.get("/healthz", _healthz)])
    return app


class HttpServer:
    """Owns the runner and sites; ``stop_accepting`` closes the sockets, ``close`` ends requests."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
        self._sites: list[web.TCPSite] = []

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        if not self._sites:
            await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, backlog=4096, reuse_port=True)
        await site.start()
        self._sites.append(site)
        server = site._server  # aiohttp exposes the bound port only here
        return server.sockets[0].getsockname()[1] if server and server.sockets else port

    async def stop_accepting(self) -> None:
        for site in self._sites:
            if site._server is not None:
                site._server.close()

    async def close(self) -> None:
        await self._runner.cleanup()
