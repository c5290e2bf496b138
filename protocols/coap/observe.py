"""Observe registrations (RFC 7641) on ``.../attributes`` and ``.../rpc``: each is a device channel
the downlink pushes shared-attribute updates or server-side RPC requests through.

A registration lives as long as aiocoap's request pipe has interest in it: a
deregistration (GET with Observe=1 on the same token), a Reset to a
notification or a confirmable notification never acknowledged ends it, and the
channel is detached then. No task waits on it.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiocoap import Code, Message
from aiocoap.pipe import Pipe

from fleetgate.core.device_service import DeviceService
from fleetgate.core.model import DeviceIdentity
from fleetgate.protocols.coap.routes import Stream

JSON = 50  # application/json
_SEQUENCE_MODULUS = 1 << 24  # the Observe option carries 24 bits


def json_message(code: Code, body: bytes, **options: Any) -> Message:
    response = Message(code=code, payload=body, **options)
    response.opt.content_format = JSON
    return response


class Observer:
    """One observation, attached to the downlink as a DeviceChannel for its device."""

    __slots__ = ("_pipe", "_stream", "_sequence", "_ended", "device")

    def __init__(self, pipe: Pipe, stream: Stream, device: DeviceIdentity) -> None:
        self._pipe = pipe
        self._stream = stream
        self._sequence = 0
        self._ended = False
        self.device = device

    def start(self, first: Message, service: DeviceService, observers: set[Observer]) -> None:
        """Send the first response (Observe=0) and receive pushes until the client's interest ends."""
        first.opt.observe = 0
        service.attach(self.device, self, "coap")
        observers.add(self)
        if self._stream is Stream.RPC:
            service.rpc_listening(self.device, self)  # persistent calls waiting are notified

        def ended() -> None:
            self._ended = True
            service.detach(self.device, self, "coap")
            observers.discard(self)

        self._pipe.add_response(first, is_last=False)
        self._pipe.on_interest_end(ended)

    def end(self, response: Message) -> None:
        """Close the observation with a final (unsuccessful) response, as at shutdown."""
        if not self._ended:
            self._pipe.add_response(response, is_last=True)

    # gateway.downlink.DeviceChannel

    def push_attributes(self, update: dict[str, Any]) -> None:
        if self._stream is Stream.ATTRIBUTES:
            self._notify(orjson.dumps(update))

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        if self._stream is Stream.RPC:
            self._notify(orjson.dumps({"id": request_id, "method": method, "params": params}))

    def _notify(self, body: bytes) -> None:
        if self._ended:
            return
        self._sequence = (self._sequence + 1) % _SEQUENCE_MODULUS
        self._pipe.add_response(json_message(Code.CONTENT, body, observe=self._sequence), is_last=False)
