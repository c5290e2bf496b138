"""IoTDA's device topics, ``$oc/devices/{device_id}/sys/...``: the route from a PUBLISH to the
device operation it asks for, and the topics the gateway publishes to an IoTDA connection.

The device id is in the topic, so a device may only use its own: another device's topic is
refused (Confined). A request id is the text after ``request_id=`` in the topic's last segment.
Huawei's SDK never subscribes: everything here is sent without a subscription.
"""

from __future__ import annotations

from typing import Any

import orjson

from fleetgate.core import iotda_downlink as kinds
from fleetgate.core.operations import Operation
from fleetgate.protocols.mqtt.routes import TopicRoute
from fleetgate.protocols.routing import Match

PREFIX = "$oc/devices/"
_SYS = "/sys/"
_REQUEST_ID = "/request_id="

_UPLINK: dict[str, TopicRoute] = {
    "properties/report": TopicRoute(Operation.IOTDA_PROPERTIES),
    "messages/up": TopicRoute(Operation.IOTDA_MESSAGE),
    "events/up": TopicRoute(Operation.IOTDA_EVENT),
}
# Topics ending in /request_id={request_id}.
_REQUESTS: dict[str, TopicRoute] = {
    "commands/response": TopicRoute(Operation.IOTDA_RESPONSE),
    "properties/set/response": TopicRoute(Operation.IOTDA_RESPONSE),
    "properties/get/response": TopicRoute(Operation.IOTDA_RESPONSE),
    "shadow/get": TopicRoute(
        Operation.IOTDA_SHADOW, PREFIX + "{device_id}/sys/shadow/get/response/request_id={request_id}"),
}
_DOWNLINK: dict[str, str] = {
    kinds.COMMAND: "sys/commands/request_id={}",
    kinds.PROPERTIES_SET: "sys/properties/set/request_id={}",
    kinds.PROPERTIES_GET: "sys/properties/get/request_id={}",
    kinds.MESSAGE: "sys/messages/down",
    kinds.EVENT: "sys/events/down",
}
# Topics matched lately (a device reports on the same topic again and again), cleared when full.
_MAX_RECENT = 10_000
_recent: dict[str, tuple[str, Match[TopicRoute]]] = {}


class Confined(Exception):
    """A device published on another device's topic."""


def match(topic: str, device_id: str) -> Match[TopicRoute] | None:
    """The route of an ``$oc`` topic of ``device_id``; None for an unknown one."""
    hit = _recent.get(topic)
    if hit is None:
        found = _match(topic)
        if found is None:
            return None
        if len(_recent) >= _MAX_RECENT:
            _recent.clear()
        hit = _recent[topic] = found
    if hit[0] != device_id:
        raise Confined(topic)
    return hit[1]


def _match(topic: str) -> tuple[str, Match[TopicRoute]] | None:
    owner, sys, path = topic[len(PREFIX):].partition(_SYS)
    if not sys or not owner or "/" in owner:
        return None
    route = _UPLINK.get(path)
    if route is not None:
        return owner, Match(path, {"": route}, {"device_id": owner})
    head, marker, request_id = path.rpartition(_REQUEST_ID)
    route = _REQUESTS.get(head) if marker else None
    if route is None or not request_id or "/" in request_id:
        return None
    return owner, Match(head, {"": route}, {"device_id": owner, "request_id": request_id})


def downlink(device_id: str, kind: str, request_id: int, body: dict[str, Any]) -> tuple[str, bytes]:
    """The topic and payload of a request of ``kind`` (fleetgate.core.iotda_downlink) to the device."""
    return PREFIX + device_id + "/" + _DOWNLINK[kind].format(request_id), orjson.dumps(body)


def rpc_as_command(device_id: str, request_id: int, method: str, params: Any) -> tuple[str, bytes]:
    """A ThingsBoard-style call (a method and params) as an IoTDA command."""
    body = {"object_device_id": device_id, "service_id": None, "command_name": method, "paras": params}
    return downlink(device_id, kinds.COMMAND, request_id, body)
