"""The aiohttp application and its listeners."""

from __future__ import annotations

import logging
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from fleetgate.core import logs, metrics
from fleetgate.core.health import ReadinessReport

Health = Callable[[], tuple[bool, dict[str, Any]]]

log = logging.getLogger(__name__)
# A caller's X-Request-Id is kept when it looks like an id (a proxy's, a trace's); else one is made.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_QUIET = frozenset({"/metrics", "/healthz", "/readyz"})


@web.middleware
async def _request_ids(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    """Every record logged while a request is served carries its id, and the answer names it.
    The access record shows the method, the path (management paths hold no secrets; the
    token travels in X-Auth-Token) and the status; probes and scrapes are not recorded."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
    with logs.bound(request_id=request_id):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Request-Id"] = request_id
            _access(request, exc.status)
            raise
        response.headers["X-Request-Id"] = request_id
        _access(request, response.status)
        return response


def _access(request: web.Request, status: int) -> None:
    if request.path not in _QUIET:
        log.info("%s %s %d", request.method, request.path, status, extra={"remote": request.remote or ""})


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
READINESS = web.AppKey("readiness", Callable[[], Awaitable[ReadinessReport]])


async def _readyz(request: web.Request) -> web.Response:
    """200 when every check passes, else 503; the body names each check and its state."""
    report = await request.app[READINESS]()
    body = {"status": "ready" if report.ready else "not ready", "checks": report.checks}
    return web.json_response(body, status=200 if report.ready else 503)


async def _always_ready() -> ReadinessReport:
    return ReadinessReport({})


def build_app(
    routes: Iterable[web.RouteDef],
    max_payload_bytes: int,
    readiness: Callable[[], Awaitable[ReadinessReport]] = _always_ready,
    health: Health | None = None,
) -> web.Application:
    """``health``: what /healthz reports beyond this process being up (workers: all of them)."""
    app = web.Application(client_max_size=max_payload_bytes, middlewares=[_request_ids])
    app[MAX_PAYLOAD_BYTES] = max_payload_bytes
    app[READINESS] = readiness
    app[HEALTH] = health
    app.add_routes([
        *routes, web.get("/metrics", _metrics), web.get("/healthz", _healthz), web.get("/readyz", _readyz),
    ])
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
