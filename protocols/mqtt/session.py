"""One MQTT connection: framing, CONNECT, publishes in, acknowledgements out.

A QoS 1 PUBACK (QoS 2 PUBREC) is written only once the message's rows are
committed, and acknowledgements leave in the order their PUBLISHes came
(MQTT-4.6.0-2), so they wait in a queue of slots like HTTP/1.1 answers. When the
ingest queue is full the session stops reading its socket and TCP carries the
back-pressure to the device.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import orjson

from fleetgate.core import metrics
from fleetgate.core.admission import address_of
from fleetgate.core.errors import GatewayError, InvalidInput, Overloaded, TooManyRequests
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import Operation, Params, Reply
from fleetgate.protocols.mqtt import codec, dialect, iotda_topics, provisioning
from fleetgate.protocols.mqtt.acks import AckQueue
from fleetgate.protocols.mqtt.aliases import TopicAliases
from fleetgate.protocols.mqtt.context import MqttContext
from fleetgate.protocols.mqtt.connect import Admitted, Refused, admit
from fleetgate.protocols.mqtt.errors import error_text, reason_of
from fleetgate.protocols.mqtt.routes import DEVICE_FILTERS, GATEWAY_FILTERS, PROVISIONING_FILTERS, ROUTES, Feed
from fleetgate.protocols.routing import render
from fleetgate.protocols.mqtt.keepalive import KeepAlive
from fleetgate.protocols.mqtt.outbound import DEFAULT_RECEIVE_MAXIMUM, Outbound
from fleetgate.protocols.mqtt.subscriptions import Subscriptions
from fleetgate.protocols.mqtt.will import store_will
from fleetgate.protocols.mqtt.packets import (
    MQTT_5, Auth, ConnAck, Connect, Disconnect, Packet, PingReq, Property, PubAck, PubComp, Publish, PubRec,
    PubRel, Reason, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
)

log = logging.getLogger(__name__)
PROTOCOL = "mqtt"
# Downlink messages a session holds while the client's Receive Maximum is used up.
_DOWNLINK_BACKLOG = 1_000


class MqttSession(asyncio.Protocol):
    # Tens of thousands of these sit idle: slots, and nothing allocated that an idle one does not use.
    __slots__ = ("_acks", "_address", "_admitted", "_aliases", "_backlog", "_clean_disconnect", "_clock",
                 "_closing", "_connecting", "_ctx", "_decoder", "_loop", "_outbound", "_paused_for", "_refusal",
                 "_subscriptions", "_transport", "_version", "_will")

    def __init__(self, context: MqttContext) -> None:
        self._ctx = context
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._decoder = codec.Decoder(max_packet_size=context.settings.limits.max_packet_size)
        self._version = 4
        self._admitted: Admitted | None = None
        self._connecting = False
        self._backlog: list[Packet] = []  # packets that arrived while CONNECT or the queue was pending
        self._acks = AckQueue(self._write, self._on_stored, self._close)
        self._aliases = TopicAliases(context.settings.limits.topic_alias_maximum)
        self._subscriptions = Subscriptions(PROVISIONING_FILTERS)
        self._outbound = Outbound(self._write, _DOWNLINK_BACKLOG)
        self._paused_for: tuple[str, ...] = ()  # why reading stopped: "queue", "inflight"
        self._clock: KeepAlive | None = None
        self._closing = False
        self._clean_disconnect = False
        self._will: Will | None = None
        self._address: str | None = None  # counted by the connection gate while open
        self._refusal: TooManyRequests | None = None  # a limit refused it: CONNECT gets a refusing CONNACK

    @property
    def device(self) -> DeviceIdentity | None:
        return self._admitted.device if self._admitted else None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast(asyncio.Transport, transport)
        if len(self._ctx.sessions) >= self._ctx.settings.max_connections:
            metrics.BAD_REQUESTS.labels(PROTOCOL, "too_many_connections").inc()
            self._close()
            return
        self._ctx.sessions.add(self)
        address = address_of(self._transport.get_extra_info("peername"))
        try:
            self._ctx.service.open_connection(address)
            self._address = address
        except TooManyRequests as exc:
            metrics.LIMIT_REFUSALS.labels(PROTOCOL, type(exc).__name__).inc()
            self._refusal = exc
        self._clock = KeepAlive(self._ctx.settings.connect_timeout, self._expired, self._paused)
        ssl_object = self._transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            metrics.TLS_HANDSHAKES.labels(PROTOCOL, "true" if ssl_object.session_reused else "false").inc()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._ctx.sessions.discard(self)
        if self._address is not None:
            self._ctx.service.close_connection(self._address)
            self._address = None
        if self._clock is not None:
            self._clock.cancel()
        admitted = self._admitted
        if admitted is not None and admitted.device is not None:
            self._ctx.service.detach(admitted.device, self)
            if admitted.will_accepted and not self._clean_disconnect:
                self._publish_will()

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except codec.ProtocolError as exc:
            metrics.BAD_REQUESTS.labels(PROTOCOL, "malformed").inc()
            if exc.reason_code == Reason.UNSUPPORTED_PROTOCOL_VERSION and self._admitted is None:
                # MQTT-3.1.2-2: answer CONNACK 0x01 (3.1.1's form, which every client reads), then close.
                self._write(codec.encode(ConnAck(reason_code=exc.reason_code), 4))
                self._close()
                return
            self._abort(exc.reason_code, str(exc))
            return
        if not packets:
            return
        if self._clock is not None:
            self._clock.packet()
        if self._backlog or self._connecting or self._paused_for:
            self._backlog.extend(packets)
            return
        self._handle_all(packets)
        if self._ctx.service.saturated and "queue" not in self._paused_for:
            self._pause("queue")
            self._ctx.spawn(self._await_room())

    # dispatch

    def _handle_all(self, packets: list[Packet]) -> None:
        for index, packet in enumerate(packets):
            if self._transport is None or self._closing:
                return
            if self._connecting or self._paused_for:
                self._backlog.extend(packets[index:])
                return
            try:
                self._handle(packet)
            except Overloaded:
                # The queue had no room for this one: keep it, and everything after it,
                # and stop reading until it has.
                self._backlog.extend(packets[index:])
                if "queue" not in self._paused_for:
                    self._pause("queue")
                    self._ctx.spawn(self._await_room())
                return

    def _handle(self, packet: Packet) -> None:
        if self._admitted is None:
            if isinstance(packet, Connect):
                self._on_connect(packet)
            else:
                self._abort(Reason.PROTOCOL_ERROR, "the first packet must be CONNECT")
            return
        if isinstance(packet, Publish):
            self._on_publish(packet)
        elif isinstance(packet, PubRel):
            self._acks.released(packet.packet_id)
        elif isinstance(packet, PingReq):
            self._write(codec.PINGRESP)
        elif isinstance(packet, Subscribe):
            self._on_subscribe(packet)
        elif isinstance(packet, Unsubscribe):
            self._on_unsubscribe(packet)
        elif isinstance(packet, Disconnect):
            self._clean_disconnect = packet.reason_code != Reason.DISCONNECT_WITH_WILL
            self._close()
        elif isinstance(packet, PubAck | PubComp):
            self._outbound.acknowledged(packet.packet_id)
        elif isinstance(packet, PubRec):
            self._write(codec.encode(PubRel(packet.packet_id), self._version))
        elif isinstance(packet, Auth):
            self._abort(Reason.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported")
        else:
            self._abort(Reason.PROTOCOL_ERROR, f"unexpected {type(packet).__name__}")

    # CONNECT

    def _on_connect(self, connect: Connect) -> None:
        self._version = self._acks.version = connect.protocol_level
        if self._refusal is not None:
            self._write(codec.encode(ConnAck(reason_code=reason_of(self._refusal, connect)), self._version))
            self._close()
            return
        self._connecting = True
        self._ctx.spawn(self._admit(connect))

    async def _admit(self, connect: Connect) -> None:
        ssl_object = self._transport.get_extra_info("ssl_object") if self._transport else None
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        decision = await admit(connect, self._ctx.service, self._ctx.settings.limits, certificate,
                               f"mqtts:{self._remote()}",
                               self._remote().rpartition(":")[0],
                               resumed=ssl_object is not None and ssl_object.session_reused)
        if self._transport is None:
            return
        if isinstance(decision, Refused):
            metrics.AUTH_FAILURES.labels(PROTOCOL).inc()
            log.info("MQTT connection refused: reason 0x%02X", decision.reason,
                     extra={"client_id": connect.client_id, "remote": self._remote(), "protocol": PROTOCOL})
            self._write(codec.encode(ConnAck(reason_code=decision.reason), self._version))
            self._close()
            return
        self._admitted = decision
        device = decision.device
        self._subscriptions = Subscriptions(
            PROVISIONING_FILTERS if device is None else GATEWAY_FILTERS if device.gateway else DEVICE_FILTERS
        )
        self._will = connect.will if decision.will_accepted else None
        outbound = self._outbound
        outbound.version = self._version
        outbound.max_packet_size = connect.properties.get(Property.MAXIMUM_PACKET_SIZE, 0)
        outbound.receive_maximum = connect.properties.get(Property.RECEIVE_MAXIMUM, DEFAULT_RECEIVE_MAXIMUM)
        if decision.device is not None:
            self._ctx.service.attach(decision.device, self)
        self._write(codec.encode(ConnAck(properties=decision.connack_properties), self._version))
        log.debug("MQTT connection accepted", extra={
            "client_id": connect.client_id, "remote": self._remote(), "protocol": PROTOCOL,
            **({"device_id": decision.device.device_id, "device": decision.device.name} if decision.device else {}),
        })
        self._connecting = False
        if self._clock is not None:
            self._clock.start(decision.keep_alive)
        self._drain_backlog()

    def _remote(self) -> str:
        peer = self._transport.get_extra_info("peername") if self._transport else None
        return f"{peer[0]}:{peer[1]}" if peer else ""

    # PUBLISH

    def _on_publish(self, publish: Publish) -> None:
        try:
            topic = self._aliases.topic_of(publish)
        except codec.ProtocolError as exc:
            self._abort(exc.reason_code, exc.message)
            return
        limits = self._ctx.settings.limits
        if publish.qos == 2 and publish.packet_id in self._acks.qos2:
            # A retransmission of a message already stored: answer it again, store nothing.
            self._acks.ready(codec.encode_pubrec(publish.packet_id, Reason.SUCCESS, self._version))
            return
        if publish.qos and self._acks.in_flight >= limits.receive_maximum:
            self._abort(Reason.RECEIVE_MAXIMUM_EXCEEDED, "more QoS 1 and 2 messages in flight than allowed")
            return
        device = self._admitted.device if self._admitted else None
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
        operation, params = route.operation, match.params
        handler = self._ctx.handlers[operation]
        try:
            if operation.reply is Reply.STORED:
                self._store(publish, handler, device, params)
            elif operation.reply is Reply.ANSWER and route.error is not None:
                self._ack_now(publish, Reason.SUCCESS)
                self._ctx.spawn(self._answer_or_error(partial(handler, device, publish.payload, params),
                                                      route.error, render(cast(str, route.reply), params)))
            elif operation.reply is Reply.ANSWER:
                answer = handler(device, publish.payload, params)
                self._ack_now(publish, Reason.SUCCESS)
                self._ctx.spawn(self._answer(answer, render(cast(str, route.reply), params)))
            else:
                handler(device, publish.payload, params)
                self._ack_now(publish, Reason.SUCCESS)
        except Overloaded:
            raise
        except InvalidInput as exc:
            self._refuse_payload(publish, device, exc)
        except GatewayError as exc:
            self._abort(reason_of(exc), exc.message)

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
        if self._acks.in_flight >= self._ctx.settings.limits.receive_maximum and self._version != MQTT_5:
            # A 3.1.1 client does not know the limit: slow it down instead (MQTT 5 clients
            # are told it in CONNACK and disconnected for exceeding it, MQTT-3.3.4-9).
            self._pause("inflight")

    def _on_stored(self) -> None:
        if "inflight" in self._paused_for and self._acks.in_flight < self._ctx.settings.limits.receive_maximum:
            self._resume("inflight")

    def _ack_now(self, publish: Publish, reason: int) -> None:
        self._acks.answer(cast(int, publish.packet_id), publish.qos, reason)

    def _confined(self, publish: Publish) -> None:
        """Another device's topic: PUBACK 0x87 on MQTT 5, the connection closed on 3.1.1."""
        metrics.BAD_REQUESTS.labels(PROTOCOL, "not_authorized").inc()
        if self._version == MQTT_5:
            self._ack_now(publish, Reason.NOT_AUTHORIZED)
        else:
            self._close()

    def _refuse_payload(self, publish: Publish, device: DeviceIdentity, exc: InvalidInput) -> None:
        """Malformed payload: PUBACK 0x99 on MQTT 5 (or when the product asks for it), else close."""
        metrics.BAD_REQUESTS.labels(PROTOCOL, "malformed").inc()
        if self._version == MQTT_5 or device.send_ack_on_validation_error:
            self._ack_now(publish, Reason.PAYLOAD_FORMAT_INVALID)
        else:
            log.info("closing %s: %s", device.name, exc.message, extra={"device_id": device.device_id})
            self._close()

    # requests that are answered, not stored

    async def _answer(self, answer: Awaitable[bytes], topic: str) -> None:
        try:
            body = await answer
        except GatewayError as exc:
            body = orjson.dumps({"error": exc.message})
        self._publish(topic, body)

    async def _answer_or_error(self, answer: Callable[[], Awaitable[bytes]], error_topic: str, topic: str) -> None:
        """An answer whose refusal, at once or later, goes to its own topic as text (v2/fw/error)."""
        try:
            body = await answer()
        except GatewayError as exc:
            metrics.BAD_REQUESTS.labels(PROTOCOL, "refused").inc()
            self._publish(error_topic, error_text(exc))
            return
        self._publish(topic, body)

    async def _provision(self, publish: Publish, reply_topic: str) -> None:
        reason, body = await provisioning.answer(self._ctx.service, publish.payload)
        if self._transport is None:
            return
        self._ack_now(publish, reason)
        if body is None:
            self._close()
            return
        self._publish(reply_topic, body)
        # ThingsBoard closes a provisioning session a while after answering.
        self._loop.call_later(self._ctx.settings.provision_close_after, self._close)

    # SUBSCRIBE

    def _on_subscribe(self, subscribe: Subscribe) -> None:
        listened = self._listens_rpc()
        codes = tuple(self._subscriptions.subscribe(s, self._version) for s in subscribe.subscriptions)
        self._acks.ready(codec.encode(SubAck(subscribe.packet_id, codes), self._version))
        device = self.device
        if device is not None and not listened and self._listens_rpc():
            self._ctx.service.rpc_listening(device, self)  # its persistent calls go out after the SUBACK

    def _listens_rpc(self) -> bool:
        return next(self._subscriptions.feeds(Feed.RPC_REQUESTS), None) is not None

    def _on_unsubscribe(self, unsubscribe: Unsubscribe) -> None:
        codes = tuple(self._subscriptions.unsubscribe(f) for f in unsubscribe.topic_filters)
        self._acks.ready(codec.encode(UnsubAck(unsubscribe.packet_id, codes), self._version))

    # downlink: fleetgate.core.downlink.DeviceChannel, and GatewayChannel for a gateway's sub-devices

    def push_attributes(self, update: dict[str, Any]) -> None:
        self._publish_all(dialect.attribute_update(self._subscriptions, update))

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        admitted = self._admitted
        if admitted is not None and admitted.iotda and admitted.device is not None:
            self._publish(*iotda_topics.rpc_as_command(admitted.device.device_id, request_id, method, params))
            return
        self._publish_all(dialect.rpc_request(self._subscriptions, request_id, method, params))

    def push_iotda(self, kind: str, request_id: int, body: dict[str, Any]) -> bool:
        """fleetgate.core.iotda_downlink: sent when connected in IoTDA's dialect, with no subscription."""
        admitted = self._admitted
        if admitted is None or not admitted.iotda or admitted.device is None:
            return False
        self._publish(*iotda_topics.downlink(admitted.device.device_id, kind, request_id, body))
        return True

    def push_subdevice_attributes(self, device: str, update: dict[str, Any]) -> None:
        self._publish_all(dialect.subdevice_attribute_update(self._subscriptions, device, update))

    def push_subdevice_rpc(self, device: str, request_id: int, method: str, params: Any) -> None:
        self._publish_all(dialect.subdevice_rpc_request(self._subscriptions, device, request_id, method, params))

    def _publish_all(self, outgoing: dialect.Outgoing) -> None:
        for topic, payload in outgoing:
            self._publish(topic, payload)

    def _publish(self, topic: str, payload: bytes) -> None:
        """Send to the device at the QoS its matching subscription was granted (0 without one)."""
        self._outbound.publish(topic, payload, self._subscriptions.qos_for(topic))

    # flow control and timers

    def _pause(self, why: str) -> None:
        if not self._paused_for and self._transport is not None:
            self._transport.pause_reading()
        if why not in self._paused_for:
            self._paused_for += (why,)

    def _resume(self, why: str) -> None:
        self._paused_for = tuple(reason for reason in self._paused_for if reason != why)
        if not self._paused_for and self._transport is not None:
            self._transport.resume_reading()
            self._drain_backlog()

    def _paused(self) -> bool:
        return bool(self._paused_for)

    async def _await_room(self) -> None:
        await self._ctx.service.wait_for_room()
        self._resume("queue")

    def _drain_backlog(self) -> None:
        backlog, self._backlog = self._backlog, []
        self._handle_all(backlog)

    def _expired(self) -> None:
        """No CONNECT in time (unless one is being admitted), or the client went quiet."""
        if self._admitted is not None:
            self._abort(Reason.KEEP_ALIVE_TIMEOUT, "keep-alive expired")
        elif not self._connecting:
            self._close()

    def _publish_will(self) -> None:
        device = self._admitted.device if self._admitted else None
        if device is not None and self._will is not None:
            store_will(self._will, device, self._ctx.service, PROTOCOL)

    # writing and closing

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(data)

    def _abort(self, reason: int, message: str) -> None:
        """A protocol violation: CONNACK or DISCONNECT with the reason on MQTT 5, then close."""
        log.debug("closing MQTT connection: %s", message)
        if self._version == MQTT_5:
            reply = ConnAck(reason_code=reason) if self._admitted is None else Disconnect(reason)
            self._write(codec.encode(reply, MQTT_5))
        self._close()

    def shutdown(self) -> None:
        """The gateway is stopping: MQTT 5 clients are told so (0x8B)."""
        if self._admitted is not None and self._version == MQTT_5:
            self._write(codec.encode(Disconnect(Reason.SERVER_SHUTTING_DOWN), MQTT_5))
        self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._closing:
            self._closing = True
            self._transport.close()

