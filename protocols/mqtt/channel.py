"""The downlink side of one MQTT connection: what the device subscribed to, and everything the
gateway sends it, rendered in its dialect (ThingsBoard's topics, or IoTDA's ``$oc`` topics).

This is the channel the core's downlink holds for the device (fleetgate.core.device_channel.DeviceChannel,
GatewayChannel for a gateway's sub-devices, fleetgate.core.iotda_downlink.IotdaChannel).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from fleetgate.core import metrics
from fleetgate.core.errors import GatewayError
from fleetgate.protocols.mqtt import dialect, iotda_topics
from fleetgate.protocols.mqtt.errors import error_text
from fleetgate.protocols.mqtt.outbound import Outbound
from fleetgate.protocols.mqtt.routes import Feed, Filter
from fleetgate.protocols.mqtt.subscriptions import Subscriptions

PROTOCOL = "mqtt"
# Downlink messages a session holds while the client's Receive Maximum is used up.
_DOWNLINK_BACKLOG = 1_000


class MqttChannel:
    # One a connection, most of them idle: slots.
    __slots__ = ("disconnect", "iotda_device", "outbound", "subscriptions")

    def __init__(
        self, write: Callable[[bytes], None], filters: dict[str, Filter], disconnect: Callable[[], None]
    ) -> None:
        self.outbound = Outbound(write, _DOWNLINK_BACKLOG)
        self.subscriptions = Subscriptions(filters)
        # The device id when it connected in IoTDA's form: its requests go out on its $oc topics.
        self.iotda_device: str | None = None
        # The operator closes the connection (fleetgate.core.downlink.Downlink.disconnect).
        self.disconnect = disconnect

    @property
    def listens_rpc(self) -> bool:
        """Whether it takes server-side requests: subscribed to them, or in IoTDA's dialect, which
        takes them with no subscription."""
        return self.iotda_device is not None or next(self.subscriptions.feeds(Feed.RPC_REQUESTS), None) is not None

    def push_attributes(self, update: dict[str, Any]) -> None:
        self._publish_all(dialect.attribute_update(self.subscriptions, update))

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        if self.iotda_device is not None:
            self.publish(*iotda_topics.rpc_as_command(self.iotda_device, request_id, method, params))
            return
        self._publish_all(dialect.rpc_request(self.subscriptions, request_id, method, params))

    def push_iotda(self, kind: str, request_id: int, body: dict[str, Any]) -> bool:
        """fleetgate.core.iotda_downlink: sent when connected in IoTDA's dialect, with no subscription."""
        if self.iotda_device is None:
            return False
        self.publish(*iotda_topics.downlink(self.iotda_device, kind, request_id, body))
        return True

    def push_subdevice_attributes(self, device: str, update: dict[str, Any]) -> None:
        self._publish_all(dialect.subdevice_attribute_update(self.subscriptions, device, update))

    def push_subdevice_rpc(self, device: str, request_id: int, method: str, params: Any) -> None:
        self._publish_all(dialect.subdevice_rpc_request(self.subscriptions, device, request_id, method, params))

    def _publish_all(self, outgoing: dialect.Outgoing) -> None:
        for topic, payload in outgoing:
            self.publish(topic, payload)

    def publish(self, topic: str, payload: bytes) -> None:
        """Send to the device at the QoS its matching subscription was granted (0 without one)."""
        self.outbound.publish(topic, payload, self.subscriptions.qos_for(topic))

    # answers to the device's own requests

    async def answer(self, answer: Awaitable[bytes], topic: str) -> None:
        try:
            body = await answer
        except GatewayError as exc:
            body = orjson.dumps({"error": exc.message})
        self.publish(topic, body)

    async def answer_or_error(self, answer: Callable[[], Awaitable[bytes]], error_topic: str, topic: str) -> None:
        """An answer whose refusal, at once or later, goes to its own topic as text (v2/fw/error)."""
        try:
            body = await answer()
        except GatewayError as exc:
            metrics.BAD_REQUESTS.labels(PROTOCOL, "refused").inc()
            self.publish(error_topic, error_text(exc))
            return
        self.publish(topic, body)
