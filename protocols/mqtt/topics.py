"""ThingsBoard's MQTT topics (spec 3.2): where a device publishes, what it may subscribe to.

Every topic is "me"-scoped: the session's own authenticated device is the only
subject, so a device can never publish or subscribe as another.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PROVISION_REQUEST = "/provision/request"
PROVISION_RESPONSE = "/provision/response"


class Kind(enum.Enum):
    TELEMETRY = "telemetry"
    ATTRIBUTES = "attributes"
    ATTRIBUTE_REQUEST = "attribute_request"
    RPC_RESPONSE = "rpc_response"  # a device's reply to a server-side call
    RPC_REQUEST = "rpc_request"  # a device's own (client-side) call


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    request_id: int | None = None
    short: bool = False  # the v2 short form: answers go to the v2 topics too


_EXACT = {
    "v1/devices/me/telemetry": Route(Kind.TELEMETRY),
    "v2/t": Route(Kind.TELEMETRY, short=True),
    "v2/t/j": Route(Kind.TELEMETRY, short=True),
    "v1/devices/me/attributes": Route(Kind.ATTRIBUTES),
    "v2/a": Route(Kind.ATTRIBUTES, short=True),
    "v2/a/j": Route(Kind.ATTRIBUTES, short=True),
}
_WITH_ID = (
    ("v1/devices/me/attributes/request/", Kind.ATTRIBUTE_REQUEST, False),
    ("v2/a/req/", Kind.ATTRIBUTE_REQUEST, True),
    ("v1/devices/me/rpc/response/", Kind.RPC_RESPONSE, False),
    ("v2/r/res/", Kind.RPC_RESPONSE, True),
    ("v1/devices/me/rpc/request/", Kind.RPC_REQUEST, False),
    ("v2/r/req/", Kind.RPC_REQUEST, True),
)
UPLINK_TOPICS = frozenset(_EXACT)


def route(topic: str) -> Route | None:
    """Where a device's PUBLISH goes; None for a topic the gateway does not serve."""
    exact = _EXACT.get(topic)
    if exact is not None:
        return exact
    for prefix, kind, short in _WITH_ID:
        if topic.startswith(prefix):
            request_id = topic[len(prefix):]
            # ThingsBoard parses the id with Integer.parseInt.
            if request_id.isdigit() and len(request_id) <= 10 and int(request_id) <= 2**31 - 1:
                return Route(kind, int(request_id), short)
            return None
    return None


def attribute_response_topic(request_id: int, short: bool) -> str:
    return f"v2/a/res/{request_id}" if short else f"v1/devices/me/attributes/response/{request_id}"


def rpc_response_topic(request_id: int, short: bool) -> str:
    return f"v2/r/res/{request_id}" if short else f"v1/devices/me/rpc/response/{request_id}"


class Feed(enum.Enum):
    """What a granted subscription delivers."""

    ATTRIBUTE_UPDATES = "attribute_updates"
    RPC_REQUESTS = "rpc_requests"
    RESPONSES = "responses"  # answers are published whether or not subscribed; this sets their QoS


# filter -> (what it delivers, whether in the v2 short form)
DEVICE_FILTERS: dict[str, tuple[Feed, bool]] = {
    "v1/devices/me/attributes": (Feed.ATTRIBUTE_UPDATES, False),
    "v2/a": (Feed.ATTRIBUTE_UPDATES, True),
    "v1/devices/me/attributes/response/+": (Feed.RESPONSES, False),
    "v2/a/res/+": (Feed.RESPONSES, True),
    "v1/devices/me/rpc/request/+": (Feed.RPC_REQUESTS, False),
    "v2/r/req/+": (Feed.RPC_REQUESTS, True),
    "v1/devices/me/rpc/response/+": (Feed.RESPONSES, False),
    "v2/r/res/+": (Feed.RESPONSES, True),
}


def attribute_update_topic(short: bool) -> str:
    return "v2/a" if short else "v1/devices/me/attributes"


def rpc_request_topic(request_id: int, short: bool) -> str:
    return f"v2/r/req/{request_id}" if short else f"v1/devices/me/rpc/request/{request_id}"
