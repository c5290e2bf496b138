"""A session's inbound topic aliases (MQTT 5, 3.3.2.3.4): alias numbers the client set, to topic names."""

from __future__ import annotations

from fleetgate.protocols.mqtt.datatypes import ProtocolError
from fleetgate.protocols.mqtt.packets import Property, Publish, Reason


class TopicAliases:
    __slots__ = ("_maximum", "_topics")

    def __init__(self, maximum: int) -> None:
        self._maximum = maximum  # the Topic Alias Maximum the gateway advertised
        self._topics: dict[int, str] = {}

    def topic_of(self, publish: Publish) -> str:
        """The PUBLISH's topic, its alias set or resolved; ProtocolError for a misuse, which closes
        the connection (with DISCONNECT and the reason on MQTT 5)."""
        alias = publish.properties.get(Property.TOPIC_ALIAS) if publish.properties else None
        if alias is None:
            if not publish.topic:
                raise ProtocolError(Reason.PROTOCOL_ERROR, "an empty topic needs a topic alias")
            return publish.topic
        if not 0 < alias <= self._maximum:
            raise ProtocolError(Reason.TOPIC_ALIAS_INVALID, f"topic alias {alias} is out of range")
        if publish.topic:
            self._topics[alias] = publish.topic
            return publish.topic
        topic = self._topics.get(alias)
        if topic is None:
            raise ProtocolError(Reason.PROTOCOL_ERROR, f"topic alias {alias} was never set")
        return topic
