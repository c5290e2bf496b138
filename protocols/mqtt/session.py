"""One MQTT connection: framing, CONNECT, the packets' dispatch, flow control and closing.

What a PUBLISH asks for is fleetgate.protocols.mqtt.inbound's, and what the gateway sends the
device is its channel's (fleetgate.protocols.mqtt.channel). A QoS 1 PUBACK (QoS 2 PUBREC) is
written only once the message's rows are committed, and acknowledgements leave in the order
their PUBLISHes came (MQTT-4.6.0-2), so they wait in a queue of slots like HTTP/1.1 answers.
When the ingest queue is full the session stops reading its socket and TCP carries the
back-pressure to the device.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from fleetgate.core import metrics
from fleetgate.core.admission import address_of
from fleetgate.core.errors import Overloaded, TooManyRequests
from fleetgate.core.model import DeviceIdentity
from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.acks import AckQueue
from fleetgate.protocols.mqtt.channel import MqttChannel
from fleetgate.protocols.mqtt.context import MqttContext
from fleetgate.protocols.mqtt.connect import Admitted, Refused, admit
from fleetgate.protocols.mqtt.errors import reason_of
from fleetgate.protocols.mqtt.inbound import Inbound
from fleetgate.protocols.mqtt.routes import DEVICE_FILTERS, GATEWAY_FILTERS, PROVISIONING_FILTERS, Feed
from fleetgate.protocols.mqtt.keepalive import KeepAlive
from fleetgate.protocols.mqtt.outbound import DEFAULT_RECEIVE_MAXIMUM
from fleetgate.protocols.mqtt.subscriptions import Subscriptions
from fleetgate.protocols.mqtt.will import store_will
from fleetgate.protocols.mqtt.packets import (
    MQTT_5, Auth, ConnAck, Connect, Disconnect, Packet, PingReq, Property, PubAck, PubComp, Publish, PubRec,
    PubRel, Reason, SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
)

log = logging.getLogger(__name__)
PROTOCOL = "mqtt"


class MqttSession(asyncio.Protocol):
    # Tens of thousands of these sit idle: slots, and nothing allocated that an idle one does not use.
    __slots__ = ("_acks", "_address", "_admitted", "_backlog", "_channel", "_clean_disconnect", "_clock",
                 "_closing", "_connecting", "_ctx", "_decoder", "_inbound", "_paused_for", "_refusal",
                 "_transport", "_version", "_will")

    def __init__(self, context: MqttContext) -> None:
        self._ctx = context
        self._transport: asyncio.Transport | None = None
        self._decoder = codec.Decoder(max_packet_size=context.settings.limits.max_packet_size)
        self._version = 4
        self._admitted: Admitted | None = None
        self._connecting = False
        self._backlog: list[Packet] = []  # packets that arrived while CONNECT or the queue was pending
        self._acks = AckQueue(self._write, self._on_stored, self._close)
        self._channel = MqttChannel(self._write, PROVISIONING_FILTERS, self._disconnected)
        self._inbound = Inbound(context, self._acks, self._channel, abort=self._abort, close=self._close,
                                pause=self._pause, is_open=self._is_open)
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
            self._ctx.service.detach(admitted.device, self._channel)
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
            self._inbound.publish(packet, self._admitted.device)
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
            self._channel.outbound.acknowledged(packet.packet_id)
        elif isinstance(packet, PubRec):
            self._write(codec.encode(PubRel(packet.packet_id), self._version))
        elif isinstance(packet, Auth):
            self._abort(Reason.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported")
        else:
            self._abort(Reason.PROTOCOL_ERROR, f"unexpected {type(packet).__name__}")

    # CONNECT

    def _on_connect(self, connect: Connect) -> None:
        self._version = self._acks.version = self._inbound.version = connect.protocol_level
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
                               resumed=ssl_object is not None and ssl_object.session_reused,
                               tls=ssl_object is not None)
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
        channel = self._channel
        channel.subscriptions = Subscriptions(
            PROVISIONING_FILTERS if device is None else GATEWAY_FILTERS if device.gateway else DEVICE_FILTERS
        )
        if decision.iotda and device is not None:
            channel.iotda_device = device.device_id
        self._will = connect.will if decision.will_accepted else None
        outbound = channel.outbound
        outbound.version = self._version
        outbound.max_packet_size = connect.properties.get(Property.MAXIMUM_PACKET_SIZE, 0)
        outbound.receive_maximum = connect.properties.get(Property.RECEIVE_MAXIMUM, DEFAULT_RECEIVE_MAXIMUM)
        if decision.device is not None:
            self._ctx.service.attach(decision.device, channel)
        self._write(codec.encode(ConnAck(properties=decision.connack_properties), self._version))
        if decision.iotda and device is not None:
            # Huawei's SDK never subscribes: its connection takes requests from the CONNACK on,
            # and the persistent calls and cached messages down waiting for it go now.
            self._ctx.service.rpc_listening(device, channel)
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

    # SUBSCRIBE

    def _on_subscribe(self, subscribe: Subscribe) -> None:
        channel = self._channel
        listened = self._rpc_listening()
        codes = tuple(channel.subscriptions.subscribe(s, self._version) for s in subscribe.subscriptions)
        self._acks.ready(codec.encode(SubAck(subscribe.packet_id, codes), self._version))
        self._rpc_listening_changed(listened)  # persistent calls go out after the SUBACK

    def _on_unsubscribe(self, unsubscribe: Unsubscribe) -> None:
        listened = self._rpc_listening()
        codes = tuple(self._channel.subscriptions.unsubscribe(f) for f in unsubscribe.topic_filters)
        self._acks.ready(codec.encode(UnsubAck(unsubscribe.packet_id, codes), self._version))
        self._rpc_listening_changed(listened)

    def _rpc_listening(self) -> tuple[bool, bool]:
        """Whether the session takes server-side RPC: the device's own, and its sub-devices'."""
        channel = self._channel
        return channel.listens_rpc, next(channel.subscriptions.feeds(Feed.SUBDEVICE_RPC_REQUESTS), None) is not None

    def _rpc_listening_changed(self, before: tuple[bool, bool]) -> None:
        """Tell the core what a SUBSCRIBE or UNSUBSCRIBE changed: persistent calls go only to a
        device listening (and a gateway's sub-devices listen through its v1/gateway/rpc)."""
        device, channel = self.device, self._channel
        own, subdevices = self._rpc_listening()
        if device is None:
            return
        if own != before[0]:
            if own:
                self._ctx.service.rpc_listening(device, channel)
            else:
                self._ctx.service.rpc_not_listening(device, channel)
        if subdevices != before[1] and device.gateway:
            self._ctx.service.subdevices_rpc_listening(device, channel, subdevices)

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

    def _on_stored(self) -> None:
        if "inflight" in self._paused_for and self._acks.in_flight < self._ctx.settings.limits.receive_maximum:
            self._resume("inflight")

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

    def _disconnected(self) -> None:
        """The operator closed the connection (IoTDA's force_disconnect): 0x98 on MQTT 5."""
        if self._version == MQTT_5:
            self._write(codec.encode(Disconnect(Reason.ADMINISTRATIVE_ACTION), MQTT_5))
        self._close()

    def shutdown(self) -> None:
        """The gateway is stopping: MQTT 5 clients are told so (0x8B)."""
        if self._admitted is not None and self._version == MQTT_5:
            self._write(codec.encode(Disconnect(Reason.SERVER_SHUTTING_DOWN), MQTT_5))
        self._close()

    def _is_open(self) -> bool:
        return self._transport is not None

    def _close(self) -> None:
        if self._transport is not None and not self._closing:
            self._closing = True
            self._transport.close()

