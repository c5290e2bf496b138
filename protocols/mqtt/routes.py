"""ThingsBoard's MQTT topics (spec 3.2): the route table from a PUBLISH's topic to the device
operation it asks for, and the subscriptions through which the gateway publishes to a device.

Every topic is "me"-scoped: the session's own authenticated device is the only
subject, so a device can never publish or subscribe as another. Answers go to
the ``reply`` topic, filled with the request's id, whether or not subscribed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fleetgate.core.operations import Operation
from fleetgate.protocols.routing import RouteTable


@dataclass(frozen=True, slots=True)
class TopicRoute:
    operation: Operation
    reply: str | None = None  # where an ANSWER operation's answer is published
    error: str | None = None  # where its refusal goes, as text (else: {"error": ...} on ``reply``)


def _topic(
    pattern: str, operation: Operation, reply: str | None = None, error: str | None = None
) -> tuple[str, str, TopicRoute]:
    return "", pattern, TopicRoute(operation, reply, error)


ROUTES: RouteTable[TopicRoute] = RouteTable([
    _topic("v1/devices/me/telemetry", Operation.TELEMETRY),
    _topic("v2/t", Operation.TELEMETRY),
    _topic("v2/t/j", Operation.TELEMETRY),
    _topic("v1/devices/me/attributes", Operation.ATTRIBUTES),
    _topic("v2/a", Operation.ATTRIBUTES),
    _topic("v2/a/j", Operation.ATTRIBUTES),
    _topic("v1/devices/me/attributes/request/{request_id:int}", Operation.ATTRIBUTE_REQUEST,
           "v1/devices/me/attributes/response/{request_id}"),
    _topic("v2/a/req/{request_id:int}", Operation.ATTRIBUTE_REQUEST, "v2/a/res/{request_id}"),
    _topic("v1/devices/me/rpc/request/{request_id:int}", Operation.CLIENT_RPC,
           "v1/devices/me/rpc/response/{request_id}"),
    _topic("v2/r/req/{request_id:int}", Operation.CLIENT_RPC, "v2/r/res/{request_id}"),
    _topic("v1/devices/me/rpc/response/{request_id:int}", Operation.RPC_REPLY),
    _topic("v2/r/res/{request_id:int}", Operation.RPC_REPLY),
    _topic("/provision/request", Operation.PROVISION, "/provision/response"),
    _topic("v1/devices/me/claim", Operation.CLAIM),
    # OTA downloads: raw bytes back, whether or not subscribed (the SDK subscribes to v2/fw/response/+)
    _topic("v2/fw/request/{request_id:int}/chunk/{chunk}", Operation.FIRMWARE_CHUNK,
           "v2/fw/response/{request_id}/chunk/{chunk}", "v2/fw/error"),
    _topic("v2/sw/request/{request_id:int}/chunk/{chunk}", Operation.SOFTWARE_CHUNK,
           "v2/sw/response/{request_id}/chunk/{chunk}", "v2/sw/error"),
    # ThingsBoard's gateway API (https://thingsboard.io/docs/reference/gateway-mqtt-api/), gateways only
    _topic("v1/gateway/connect", Operation.GATEWAY_CONNECT),
    _topic("v1/gateway/disconnect", Operation.GATEWAY_DISCONNECT),
    _topic("v1/gateway/telemetry", Operation.GATEWAY_TELEMETRY),
    _topic("v1/gateway/attributes", Operation.GATEWAY_ATTRIBUTES),
    _topic("v1/gateway/attributes/request", Operation.GATEWAY_ATTRIBUTE_REQUEST, "v1/gateway/attributes/response"),
    _topic("v1/gateway/rpc", Operation.GATEWAY_RPC_REPLY),
    _topic("v1/gateway/claim", Operation.GATEWAY_CLAIM),
])


class Feed(enum.Enum):
    """What a granted subscription delivers."""

    ATTRIBUTE_UPDATES = "attribute_updates"
    RPC_REQUESTS = "rpc_requests"
    SUBDEVICE_ATTRIBUTE_UPDATES = "subdevice_attribute_updates"  # {"device": "A", "data": {...}}
    SUBDEVICE_RPC_REQUESTS = "subdevice_rpc_requests"  # {"device": "A", "data": {"id": 1, ...}}
    RESPONSES = "responses"  # answers are published whether or not subscribed; this sets their QoS


@dataclass(frozen=True, slots=True)
class Filter:
    feed: Feed
    topic: str = ""  # what a pushed update or request is published on ({request_id} filled in)


# The filters a device may subscribe to; a provisioning session only to its answer.
DEVICE_FILTERS: dict[str, Filter] = {
    "v1/devices/me/attributes": Filter(Feed.ATTRIBUTE_UPDATES, "v1/devices/me/attributes"),
    "v2/a": Filter(Feed.ATTRIBUTE_UPDATES, "v2/a"),
    "v1/devices/me/attributes/response/+": Filter(Feed.RESPONSES),
    "v2/a/res/+": Filter(Feed.RESPONSES),
    "v1/devices/me/rpc/request/+": Filter(Feed.RPC_REQUESTS, "v1/devices/me/rpc/request/{request_id}"),
    "v2/r/req/+": Filter(Feed.RPC_REQUESTS, "v2/r/req/{request_id}"),
    "v1/devices/me/rpc/response/+": Filter(Feed.RESPONSES),
    "v2/r/res/+": Filter(Feed.RESPONSES),
    "v2/fw/response/+": Filter(Feed.RESPONSES),
    "v2/fw/response/#": Filter(Feed.RESPONSES),
    "v2/fw/error": Filter(Feed.RESPONSES),
    "v2/sw/response/+": Filter(Feed.RESPONSES),
    "v2/sw/response/#": Filter(Feed.RESPONSES),
    "v2/sw/error": Filter(Feed.RESPONSES),
}
GATEWAY_FILTERS: dict[str, Filter] = {
    **DEVICE_FILTERS,
    "v1/gateway/attributes": Filter(Feed.SUBDEVICE_ATTRIBUTE_UPDATES, "v1/gateway/attributes"),
    "v1/gateway/attributes/response": Filter(Feed.RESPONSES),
    "v1/gateway/rpc": Filter(Feed.SUBDEVICE_RPC_REQUESTS, "v1/gateway/rpc"),
}
PROVISIONING_FILTERS: dict[str, Filter] = {"/provision/response": Filter(Feed.RESPONSES)}
