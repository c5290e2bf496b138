"""What a session has subscribed to: which filters it may have, and at which QoS the
gateway publishes to it (ThingsBoard grants at most QoS 1)."""

from __future__ import annotations

from collections.abc import Iterator

from fleetgate.protocols.mqtt.packets import MQTT_5, Reason, Subscription
from fleetgate.protocols.mqtt.routes import Feed, Filter


class Subscriptions:
    __slots__ = ("_filters", "_granted")

    def __init__(self, filters: dict[str, Filter]) -> None:
        """``filters``: those the session may have (routes.DEVICE_FILTERS, GATEWAY_FILTERS...)."""
        self._filters = filters
        self._granted: dict[str, int] = {}

    def subscribe(self, subscription: Subscription, version: int) -> int:
        """The SUBACK code: the QoS granted, or the refusal."""
        if subscription.topic_filter not in self._filters:
            return Reason.TOPIC_FILTER_INVALID if version == MQTT_5 else 0x80
        granted = min(subscription.qos, 1)
        self._granted[subscription.topic_filter] = granted
        return granted

    def unsubscribe(self, topic_filter: str) -> int:
        return Reason.SUCCESS if self._granted.pop(topic_filter, None) is not None else Reason.NO_SUBSCRIPTION_EXISTED

    def feeds(self, feed: Feed) -> Iterator[str]:
        """The topic (a pattern) of each granted filter delivering ``feed``."""
        for topic_filter, granted in self._filters.items():
            if granted.feed is feed and topic_filter in self._granted:
                yield granted.topic

    def qos_for(self, topic: str) -> int:
        """The QoS of the best matching subscription; 0 without one (answers go out anyway)."""
        return max((qos for f, qos in self._granted.items() if _matches(f, topic)), default=0)


def _matches(topic_filter: str, topic: str) -> bool:
    if topic_filter == topic:
        return True
    if topic_filter.endswith("/+"):
        prefix = topic_filter[:-1]
        return topic.startswith(prefix) and "/" not in topic[len(prefix):]
    return False
