"""What the gateway sends a device, on ThingsBoard's topics: each downlink event as the
(topic, payload) pairs of the feeds the session's subscriptions grant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from fleetgate.protocols.mqtt.routes import Feed
from fleetgate.protocols.mqtt.subscriptions import Subscriptions
from fleetgate.protocols.routing import render

Outgoing = Iterator[tuple[str, bytes]]


def attribute_update(subscriptions: Subscriptions, update: dict[str, Any]) -> Outgoing:
    body = orjson.dumps(update)
    for topic in subscriptions.feeds(Feed.ATTRIBUTE_UPDATES):
        yield topic, body


def rpc_request(subscriptions: Subscriptions, request_id: int, method: str, params: Any) -> Outgoing:
    # The id is in the topic, not in the body.
    body = orjson.dumps({"method": method, "params": params})
    for topic in subscriptions.feeds(Feed.RPC_REQUESTS):
        yield render(topic, {"request_id": request_id}), body


def subdevice_attribute_update(subscriptions: Subscriptions, device: str, update: dict[str, Any]) -> Outgoing:
    body = orjson.dumps({"device": device, "data": update})
    for topic in subscriptions.feeds(Feed.SUBDEVICE_ATTRIBUTE_UPDATES):
        yield topic, body


def subdevice_rpc_request(
    subscriptions: Subscriptions, device: str, request_id: int, method: str, params: Any
) -> Outgoing:
    body = orjson.dumps({"device": device, "data": {"id": request_id, "method": method, "params": params}})
    for topic in subscriptions.feeds(Feed.SUBDEVICE_RPC_REQUESTS):
        yield topic, body
