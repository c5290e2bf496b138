"""A device's PUBLISH: the operation its topic names, handed to the device service, and the
acknowledgement it earns, at once or, for what is stored, once its rows are committed (the
ack queue keeps them in order). Refusals follow the protocol version: a reason code in the
PUBACK on MQTT 5, the connection closed on 3.1.1.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from fleetgate.core import metrics
from fleetgate.core.errors import GatewayError, InvalidInput, Overloaded
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import Operation, Params, Reply
from fleetgate.protocols.mqtt import codec, iotda_topics, provisioning
from fleetgate.protocols.mqtt.acks import AckQueue
from fleetgate.protocols.mqtt.aliases import TopicAliases
from fleetgate.protocols.mqtt.channel import MqttChannel
from fleetgate.protocols.mqtt.context import MqttContext
from fleetgate.protocols.mqtt.errors import disconnect_reason
from fleetgate.protocols.mqtt.packets import MQTT_5, Publish, Reason
from fleetgate.protocols.mqtt.routes import ROUTES, TopicRoute
from fleetgate.protocols.routing import render

log = logging.getLogger(__name__)
PROTOCOL = "mqtt"


class Inbound:
    """The PUBLISHes of one connection. The session lends it its ways to stop: ``abort`` (a
    protocol violation, with a reason on MQTT 5), ``close``, and ``pause`` (stop reading)."""

    __slots__ = ("_abort", "_acks", "_aliases", "_channel", "_close", "_ctx", "_is_open", "_last", "_last_topic",
                 "_pause", "version")

    def __init__(
        self, context: MqttContext, acks: AckQueue, channel: MqttChannel, *, abort: Callable[[int, str], None],
        close: Callable[[], None], pause: Callable[[str], None], is_open: Callable[[], bool],
    ) -> None:
        self._ctx = context
        self._acks = acks
        self._channel = channel
        self._aliases = TopicAliases(context.settings.limits.topic_alias_maximum)
        self._abort = abort
        self._close = close
        self._pause = pause
        self._is_open = is_open
        self.version = 4
        # The last topic the device published to, and what it resolved to: a device sends to
        # the same topic again and again, and the answer depends only on the topic and the
        # connection's device, so it is worked out once, not for every message.
        self._last_topic = ""
        self._last: tuple[TopicRoute, Params, Callable[..., Any]] | None = None

    def publish(self, publish: Publish, device: DeviceIdentity | None) -> None:
        """Raises Overloaded when the ingest queue has no room for it: the caller keeps it."""
        try:
            topic = self._aliases.topic_of(publish)
        except codec.ProtocolError as exc:
            self._abort(exc.reason_code, exc.message)
            return
        limits = self._ctx.settings.limits
        if publish.qos == 2 and publish.packet_id in self._acks.qos2:
            # A retransmission of a message already stored: answer it again, store nothing.
            self._acks.ready(codec.encode_pubrec(publish.packet_id, Reason.SUCCESS, self.version))
            return
        if publish.qos and self._acks.in_flight >= limits.receive_maximum:
            self._abort(Reason.RECEIVE_MAXIMUM_EXCEEDED, "more QoS 1 and 2 messages in flight than allowed")
            return
        if device is not None and topic == self._last_topic and self._last is not None:
            self._dispatch(publish, device, *self._last)
            return
        if len(topic) > limits.max_topic_length:
            match = None
        elif device is not None and topic.startswith(iotda_topics.PREFIX):
            try:
                match = iotda_topics.match(topic, device.device_id)
            except iotda_topics.Confined:
                self._confined(publish)
                return
        else:
            match = ROUTES.match(topic)
        route = match.targets[""] if match is not None else None
        if device is None:
            # A provisioning session may only ask for its credentials.
            if route is None or route.operation is not Operation.PROVISION:
                self._ack_now(publish, Reason.TOPIC_NAME_INVALID)
                self._close()
                return
            self._ctx.spawn(self._provision(publish, cast(str, route.reply)))
            return
        if route is None or not route.operation.needs_device or not route.operation.allowed(device):
            metrics.BAD_REQUESTS.labels(PROTOCOL, "unknown_topic").inc()
            self._ack_now(publish, Reason.TOPIC_NAME_INVALID)
            return
        assert match is not None
        handler = self._ctx.handlers[route.operation]
        self._last_topic, self._last = topic, (route, match.params, handler)
        self._dispatch(publish, device, route, match.params, handler)

    def _dispatch(
        self, publish: Publish, device: DeviceIdentity, route: TopicRoute, params: Params, handler: Callable[..., Any]
    ) -> None:
        """Perform the operation a device's topic names, and acknowledge it as the operation says."""
        operation = route.operation
        try:
            if operation.reply is Reply.STORED:
                self._store(publish, handler, device, params)
            elif operation.reply is Reply.ANSWER and route.error is not None:
                self._ack_now(publish, Reason.SUCCESS)
                self._ctx.spawn(self._channel.answer_or_error(partial(handler, device, publish.payload, params),
                                                              route.error, render(cast(str, route.reply), params)))
            elif operation.reply is Reply.ANSWER:
                answer = handler(device, publish.payload, params)
                self._ack_now(publish, Reason.SUCCESS)
                self._ctx.spawn(self._channel.answer(answer, render(cast(str, route.reply), params)))
            else:
                handler(device, publish.payload, params)
                self._ack_now(publish, Reason.SUCCESS)
        except Overloaded:
            raise
        except InvalidInput as exc:
            self._refuse_payload(publish, device, exc)
        except GatewayError as exc:
            self._abort(disconnect_reason(exc), exc.message)

    def _store(self, publish: Publish, submit: Callable[..., Any], device: DeviceIdentity, params: Params) -> None:
        """Hand the message to the pipeline; its acknowledgement waits in order for the commit."""
        if publish.qos == 0:
            submit(device, publish.payload, params, PROTOCOL)
            return
        receipt = self._acks.waiting(cast(int, publish.packet_id), publish.qos)
        try:
            submit(device, publish.payload, params, PROTOCOL, receipt)
        except BaseException:
            self._acks.withdraw()
            raise
        if self._acks.in_flight >= self._ctx.settings.limits.receive_maximum and self.version != MQTT_5:
            # A 3.1.1 client does not know the limit: slow it down instead (MQTT 5 clients
            # are told it in CONNACK and disconnected for exceeding it, MQTT-3.3.4-9).
            self._pause("inflight")

    def _ack_now(self, publish: Publish, reason: int) -> None:
        self._acks.answer(cast(int, publish.packet_id), publish.qos, reason)

    def _confined(self, publish: Publish) -> None:
        """Another device's topic: PUBACK 0x87 on MQTT 5, the connection closed on 3.1.1."""
        metrics.BAD_REQUESTS.labels(PROTOCOL, "not_authorized").inc()
        if self.version == MQTT_5:
            self._ack_now(publish, Reason.NOT_AUTHORIZED)
        else:
            self._close()

    def _refuse_payload(self, publish: Publish, device: DeviceIdentity, exc: InvalidInput) -> None:
        """Malformed payload: PUBACK 0x99 on MQTT 5 (or when the product asks for it), else close."""
        metrics.BAD_REQUESTS.labels(PROTOCOL, "malformed").inc()
        if self.version == MQTT_5 or device.send_ack_on_validation_error:
            self._ack_now(publish, Reason.PAYLOAD_FORMAT_INVALID)
        else:
            log.info("closing %s: %s", device.name, exc.message, extra={"device_id": device.device_id})
            self._close()

    async def _provision(self, publish: Publish, reply_topic: str) -> None:
        reason, body = await provisioning.answer(self._ctx.service, publish.payload)
        if not self._is_open():
            return
        self._ack_now(publish, reason)
        if body is None:
            self._close()
            return
        self._channel.publish(reply_topic, body)
        # ThingsBoard closes a provisioning session a while after answering.
        asyncio.get_running_loop().call_later(self._ctx.settings.provision_close_after, self._close)
