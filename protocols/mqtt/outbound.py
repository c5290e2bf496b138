"""What the gateway publishes to a device: packet ids, and the client's flow control.

A QoS 1 or 2 PUBLISH is outstanding until the client's PUBACK (or PUBCOMP). An MQTT 5
client says in CONNECT how many of them it takes at once (Receive Maximum, 65,535 when
absent, MQTT-3.3.4-9); the gateway sends no more than that and keeps the rest here, in
order, to go as acknowledgements come back. Nothing that is waiting is ever dropped
silently: past ``backlog_limit`` a message is refused, counted and logged, because a
client that acknowledges nothing must not make the gateway hold an unbounded queue.
A packet id is never reused while its message is outstanding (MQTT-2.2.1-3).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from fleetgate.core import metrics
from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.packets import Publish

log = logging.getLogger(__name__)

PROTOCOL = "mqtt"
# A 3.1.1 client has no Receive Maximum: the gateway keeps itself to this many.
DEFAULT_RECEIVE_MAXIMUM = 65_535
_MAX_PACKET_ID = 65_535


class Outbound:
    # One a connection, most of them idle: the set and the queue are made on first use.
    __slots__ = ("_backlog", "_backlog_limit", "_last_id", "_outstanding", "_write", "max_packet_size",
                 "receive_maximum", "version")

    def __init__(self, write: Callable[[bytes], None], backlog_limit: int) -> None:
        self._write = write
        self._backlog_limit = backlog_limit
        self.version = 4
        self.receive_maximum = DEFAULT_RECEIVE_MAXIMUM
        self.max_packet_size = 0  # the client's Maximum Packet Size; 0: no limit
        self._outstanding: set[int] | None = None
        self._backlog: deque[tuple[str, bytes, int]] | None = None
        self._last_id = 0

    @property
    def outstanding(self) -> int:
        return len(self._outstanding) if self._outstanding else 0

    @property
    def waiting(self) -> int:
        return len(self._backlog) if self._backlog else 0

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        if qos and (self._backlog or self.outstanding >= self.receive_maximum):
            if self._backlog is None:
                self._backlog = deque()
            if len(self._backlog) >= self._backlog_limit:
                metrics.BAD_REQUESTS.labels(PROTOCOL, "downlink_backlog_full").inc()
                log.warning("not sent on %s: %d messages already wait for the client's acknowledgements",
                            topic, len(self._backlog))
                return
            self._backlog.append((topic, payload, qos))
            return
        self._send(topic, payload, qos)

    def acknowledged(self, packet_id: int) -> None:
        """The client's PUBACK or PUBCOMP: that message is done, the next waiting one goes."""
        if self._outstanding is None:
            return
        self._outstanding.discard(packet_id)
        backlog = self._backlog
        while backlog and len(self._outstanding) < self.receive_maximum:
            self._send(*backlog.popleft())

    def _send(self, topic: str, payload: bytes, qos: int) -> None:
        packet_id = self._next_id() if qos else None
        packet = codec.encode(Publish(topic, payload, qos=qos, packet_id=packet_id), self.version)
        if self.max_packet_size and len(packet) > self.max_packet_size:
            # MQTT-3.1.2-24: never send a client more than it said it takes; the message is dropped.
            metrics.BAD_REQUESTS.labels(PROTOCOL, "over_client_maximum").inc()
            log.info("not sent: %d bytes on %s exceed the client's Maximum Packet Size", len(packet), topic)
            return
        if packet_id is not None:
            if self._outstanding is None:
                self._outstanding = set()
            self._outstanding.add(packet_id)
        self._write(packet)

    def _next_id(self) -> int:
        # At most 65,535 are outstanding (the Receive Maximum's ceiling), so one is free.
        packet_id = self._last_id
        while True:
            packet_id = packet_id % _MAX_PACKET_ID + 1
            if not self._outstanding or packet_id not in self._outstanding:
                self._last_id = packet_id
                return packet_id
