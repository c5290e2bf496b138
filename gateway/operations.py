"""Everything a device can ask of the gateway, whatever its protocol.

Each operation is one method of :class:`fleetgate.core.device_service.DeviceService`
(its value names the method), and each front-end's route table maps its wire
addresses to these members. How an operation is answered decides the method's shape:

- ``STORED``: ``method(device, body, params, protocol, receipt) -> Future | None``;
  acknowledged once the rows are committed (the receipt is told, or the future
  completes; None with no receipt means "acknowledge now").
- ``ANSWER``: ``method(device, body, params) -> Awaitable[bytes]``; the answer's body. The
  request is checked before the awaitable is returned, so a malformed one is refused
  at once, as a stored message is.
- ``NONE``: ``method(device, body, params) -> None``; acknowledged at once.

``params`` holds what the address carried (a request id from the topic or path,
keys from a query string); ``body`` is the request's payload as it arrived.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

Params = Mapping[str, Any]
NO_PARAMS: Params = MappingProxyType({})


class Reply(enum.Enum):
    STORED = "stored"
    ANSWER = "answer"
    NONE = "none"


class Operation(enum.Enum):
    """What a device does; ``needs_device`` is False only for what comes before credentials."""

    TELEMETRY = ("telemetry", Reply.STORED)
    ATTRIBUTES = ("attributes", Reply.STORED)
    ATTRIBUTE_REQUEST = ("attribute_request", Reply.ANSWER)
    CLIENT_RPC = ("client_rpc", Reply.ANSWER)
    RPC_REPLY = ("rpc_reply", Reply.NONE)
    PROVISION = ("provision", Reply.ANSWER, False)

    def __init__(self, method: str, reply: Reply, needs_device: bool = True) -> None:
        self.method = method
        self.reply = reply
        self.needs_device = needs_device
