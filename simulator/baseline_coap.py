"""The CoAP baseline: a bare aiocoap POST handler on the gateway's telemetry path.

``python -m fleetgate.simulator.baseline_coap --port N`` serves POST /api/v1/{token}/telemetry
(any token) by answering 2.01, with nothing else: aiocoap's server context with its
defaults (its own duplicate detection included), the UDP transport only, uvloop, one
process, the gateway's socket receive buffer. What the gateway adds on top (authentication, decoding, queueing, the database
commit before the answer) is what ``bench coap``'s ratio prices. It prints
``coap: coap://HOST:PORT`` once listening, as ``iot-gateway serve`` does, and stops on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

import aiocoap
from aiocoap import Code, Message
from aiocoap.interfaces import Resource

from fleetgate.simulator import runtime

_PATH_LENGTH = 4  # api, v1, {token}, telemetry
# The gateway's CoAP socket receive buffer (about 3,500 small datagrams instead of Linux's
# default 200 or so): a baseline dropping bursts the gateway absorbs would price the
# kernel's losses, not the gateway's work.
RECEIVE_BUFFER = 4 << 20


class TelemetrySite(Resource):
    """The root resource: 2.01 to a POST on /api/v1/*/telemetry, 4.04 elsewhere."""

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False

    async def render(self, request: Message) -> Message:
        path = request.opt.uri_path
        if len(path) != _PATH_LENGTH or path[:2] != ("api", "v1") or path[3] != "telemetry":
            return Message(code=Code.NOT_FOUND)
        if request.code != Code.POST:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        return Message(code=Code.CREATED)

    async def render_to_pipe(self, pipe) -> None:  # type: ignore[no-untyped-def]
        pipe.add_response(await self.render(pipe.request), is_last=True)


async def serve(host: str, port: int) -> None:
    context = await aiocoap.Context.create_server_context(TelemetrySite(), bind=(host, port), transports=["udp6"])
    try:
        bound = port
        for interface in context.request_interfaces:
            sock = interface.token_interface.message_interface.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # as the gateway's
            bound = sock.getsockname()[1]
        print(f"coap: coap://{host}:{bound}", flush=True)
        await runtime.until_signalled()
    finally:
        await context.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    return runtime.serve_main("python -m fleetgate.simulator.baseline_coap", __doc__.splitlines()[0], serve, argv)


if __name__ == "__main__":
    sys.exit(main())
