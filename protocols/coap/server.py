"""The CoAP listener: an aiocoap server context over UDP, the device site, the tasks it runs."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import aiocoap

from fleetgate.core.tasks import OwnedTasks
from fleetgate.protocols.coap.cycles import breaking_cycles
from fleetgate.protocols.coap.decoding import guard_decoding
from fleetgate.protocols.coap.dedup import DedupWindow
from fleetgate.core.device_service import DeviceService
from fleetgate.protocols.coap.site import DeviceSite
from fleetgate.protocols.coap.tuning import GatewayTuning, tune_requests

# Requests arrive in bursts (a fleet reconnecting, devices on the same schedule) and the
# kernel drops what does not fit in the socket's receive buffer, which then costs a 2-3 s
# retransmission. Linux's default, 208 KiB, holds about 200 small datagrams; this holds
# about 3,500 (the kernel caps it at net.core.rmem_max).
RECEIVE_BUFFER = 4 << 20


@dataclass(frozen=True, slots=True)
class CoapSettings:
    max_payload: int
    dedup_seconds: float


class CoapServer:
    """Owns its aiocoap contexts and the tasks its handlers run. ``stop_accepting`` refuses new
    requests (5.03), ``close`` lets running handlers finish, ends the observations and the sockets.

    Only aiocoap's UDP transport is started: no CoAP over TCP, TLS or WebSockets, and no DTLS.
    Duplicate detection is protocols.coap.dedup's, with a ``dedup_seconds`` window.
    """

    def __init__(self, service: DeviceService, settings: CoapSettings) -> None:
        self._tasks = OwnedTasks()
        self._dedup_seconds = settings.dedup_seconds
        self.dedup_windows: list[DedupWindow] = []
        self.site = DeviceSite(service, settings.max_payload, self._tasks.spawn)
        self._contexts: list[aiocoap.Context] = []

    async def start(self, host: str, port: int) -> int:
        """Listen on UDP ``host``:``port`` (0: any free port); the port really bound."""
        context = await aiocoap.Context.create_server_context(
            self.site, bind=(host, port), transports=["udp6"], loggername="gateway.coap"
        )
        self._contexts.append(context)
        # aiocoap's Context.render_to_pipe wraps every request's pipe in a second one, names a
        # task after the request's repr and runs the site's coroutine in it: about a quarter of
        # the gateway's CPU under load. The site answers synchronously (what waits runs in its
        # owned tasks, and it turns its own errors into responses), so it is called directly.
        if not hasattr(context, "render_to_pipe"):
            raise RuntimeError("aiocoap's Context has no render_to_pipe: unsupported aiocoap version")
        _socket(context).setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        token_managers = []
        for interface in context.request_interfaces:
            manager = getattr(interface, "token_interface", None)
            if manager is not None and hasattr(manager, "message_interface"):  # a message manager: UDP
                window = DedupWindow(self._dedup_seconds)
                window.install(manager)
                tune_requests(manager, GatewayTuning())
                guard_decoding(manager.message_interface)
                self.dedup_windows.append(window)
                token_managers.append(interface)
        context.render_to_pipe = breaking_cycles(self.site.handle, token_managers)  # type: ignore[method-assign]
        return _bound_port(context)

    async def stop_accepting(self) -> None:
        self.site.accepting = False

    async def close(self, timeout: float = 5.0) -> None:
        await self._tasks.finish(timeout)
        self.site.end_observations()
        # Once only: aiocoap's context cannot be shut down twice, and the gateway may be stopped twice.
        contexts, self._contexts = self._contexts, []
        for context in contexts:
            await context.shutdown()
        for window in self.dedup_windows:
            window.close()


def _bound_port(context: aiocoap.Context) -> int:
    return int(_socket(context).getsockname()[1])


def _socket(context: aiocoap.Context) -> socket.socket:
    for interface in context.request_interfaces:
        transport = getattr(getattr(interface.token_interface, "message_interface", None), "transport", None)
        sock: socket.socket | None = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            return sock
    raise RuntimeError("the CoAP context has no UDP socket")
