"""Requests to a device in IoTDA's terms, and how a connection takes them.

A downlink request carries its IoTDA form (``{"k": kind, "b": body}``) beside the RPC form
(method and params). A connection in IoTDA's dialect renders the kind on its ``$oc`` topic; a
ThingsBoard connection takes a command as RPC (``method`` = the command's name, ``params`` =
its paras) and nothing else, so a properties request or a message down to it is not delivered.
"""

from __future__ import annotations

from typing import Any, Protocol

COMMAND = "command"  # sys/commands/request_id={id}
PROPERTIES_SET = "properties_set"  # sys/properties/set/request_id={id}
PROPERTIES_GET = "properties_get"  # sys/properties/get/request_id={id}
MESSAGE = "message"  # sys/messages/down
EVENT = "events_down"  # sys/events/down
KINDS = frozenset({COMMAND, PROPERTIES_SET, PROPERTIES_GET, MESSAGE, EVENT})


class IotdaChannel(Protocol):
    def push_iotda(self, kind: str, request_id: int, body: dict[str, Any]) -> bool:
        """Send it, if this connection speaks IoTDA's dialect; False otherwise."""


def push(channel: object, kind: str, body: dict[str, Any], request_id: int = 0) -> bool:
    method = getattr(channel, "push_iotda", None)
    return method is not None and bool(method(kind, request_id, body))


def deliver(channel: Any, request_id: int, method: str, params: Any, iotda: dict[str, Any]) -> bool:
    """Hand the request to ``channel`` in its dialect; whether it took it."""
    kind = iotda.get("k")
    if push(channel, kind, iotda.get("b") or {}, request_id):
        return True
    if kind == COMMAND:
        channel.push_rpc(request_id, method, params)
        return True
    return False
