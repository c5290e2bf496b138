"""The baseline: a bare aiohttp handler on the gateway's telemetry path.

``python -m fleetgate.simulator.baseline --port N`` serves POST /api/v1/{token}/telemetry
by reading the body and answering 200, with nothing else: one process, uvloop,
no access log, the same listener options as the gateway. What the gateway adds
on top (authentication, decoding, queueing, the database commit before the
answer) is what a bench's ratio gateway/baseline prices. It prints
``http: http://HOST:PORT`` once listening, as ``iot-gateway serve`` does, and
stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from aiohttp import web

from fleetgate.simulator import runtime


async def _telemetry(request: web.Request) -> web.Response:
    await request.read()
    return web.Response()


def build_app(max_payload_bytes: int = 65_536) -> web.Application:
    app = web.Application(client_max_size=max_payload_bytes)
    app.add_routes([web.post("/api/v1/{token}/telemetry", _telemetry)])
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(build_app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=4096, reuse_port=True)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        print(f"http: http://{host}:{bound}", flush=True)
        await runtime.until_signalled()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    return runtime.serve_main("python -m fleetgate.simulator.baseline", __doc__.splitlines()[0], serve, argv)


if __name__ == "__main__":
    sys.exit(main())
