"""One simulated device's MQTT connection: an ``asyncio.Protocol`` built for throughput.

Its per-message work is a dictionary update and a slice of one
``transport.write``; the driver that owns it (simulator.mqtt_driver) is told of
acknowledgements once per received chunk, not once per packet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Protocol, cast

from fleetgate.simulator.mqtt_packets import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    MAX_PACKET_ID,
    MQTT_5,
    MQTT_311,
    PACKET_IDS,
    PINGREQ_PACKET,
    PINGRESP,
    PROPERTY_RECEIVE_MAXIMUM,
    PUBACK,
    SUBACK,
    MqttProtocolError,
    PublishTemplate,
    connack_error,
    read_properties,
    reason_name,
    remaining_length,
)


class ConnectionOwner(Protocol):
    """Who drives a set of connections: told of acknowledgements and of a connection's end."""

    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        """PUBACKs, in one received chunk: the start times (nanoseconds) of the messages
        acknowledged as received, and the MQTT 5 reason codes >= 0x80 of those refused, if any."""
        ...

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        """The connection ended; ``lost``: start times of messages still unacknowledged."""
        ...

    def pong(self, conn: MqttConnection) -> None:
        """A PINGRESP: the server has read everything sent before the PINGREQ."""
        ...


class _Unowned:
    def acked(self, conn: MqttConnection, started: list[int], failures: list[int] | None) -> None:
        pass

    def closed(self, conn: MqttConnection, reason: str, lost: list[int]) -> None:
        pass

    def pong(self, conn: MqttConnection) -> None:
        pass


UNOWNED: ConnectionOwner = _Unowned()


class MqttConnection(asyncio.Protocol):
    """One device's MQTT connection: CONNECT, then PUBLISH as its owner says.

    ``inflight`` maps each unacknowledged QoS 1 packet id to when its message
    counts as started; ids cycle 1..65535, skipping ones still in use.
    ``window`` is how many may be unacknowledged at once (--inflight, lowered
    to the server's Receive Maximum on MQTT 5). ``connected`` resolves with the
    CONNACK's code (0: accepted), or -1 if the connection ends first (why: ``lost_reason``).
    """

    __slots__ = (
        "_buffer",
        "_connect",
        "_cycle",
        "_head",
        "_last_ts",
        "_pid",
        "_qos",
        "_tail",
        "_tail_after_ts",
        "_transport",
        "_turn",
        "connected",
        "index",
        "inflight",
        "lost_reason",
        "open",
        "owner",
        "pings_answered",
        "sent",
        "version",
        "window",
    )

    def __init__(
        self, index: int, connect: bytes, template: PublishTemplate, *, window: int, version: int = MQTT_311,
    ) -> None:
        self.index = index
        self.owner: ConnectionOwner = UNOWNED
        self.version = version
        self.window = window
        self.inflight: dict[int, int] = {}
        self.open = False
        self.sent = 0  # PUBLISH packets written, any QoS
        self.pings_answered = 0
        self.connected: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._qos = template.qos
        self._head = template.head
        self._tail = template.tail
        self._tail_after_ts = template.tail_after_ts
        self._cycle = template.cycle
        self._turn = 0
        self._last_ts = 0
        self._pid = 0
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._connect = connect
        self.lost_reason = ""

    @property
    def free(self) -> int:
        """How many more QoS 1 messages may be sent now."""
        return self.window - len(self.inflight)

    # --- sending

    def publish(self, count: int, started_ns: int, *, ping: bool = False) -> None:
        """Write ``count`` messages (and a PINGREQ after them if ``ping``) in one write,
        all counted as started at ``started_ns``."""
        transport = self._transport
        if transport is None or not self.open or count <= 0:
            return
        parts = self._qos1_parts(repeat(started_ns, count)) if self._qos else self._qos0_parts(count)
        if ping:
            parts.append(PINGREQ_PACKET)
        self.sent += count
        transport.write(b"".join(parts))

    def publish_each(self, started: Sequence[int]) -> None:
        """Write one message per start time (QoS 1), all in one write."""
        transport = self._transport
        if transport is None or not self.open or not started:
            return
        parts = self._qos1_parts(started)
        self.sent += len(started)
        transport.write(b"".join(parts))

    def _qos1_parts(self, started: Iterable[int]) -> list[bytes]:
        """One QoS 1 message per start time, each under the next packet id not in flight."""
        if self._cycle:
            return self._cycle_parts(started, acked=True)
        head, tail, after = self._head, self._tail, self._tail_after_ts
        inflight, ids, pid = self.inflight, PACKET_IDS, self._pid
        parts: list[bytes] = []
        for started_ns in started:
            pid = pid % MAX_PACKET_ID + 1
            while pid in inflight:
                pid = pid % MAX_PACKET_ID + 1
            inflight[pid] = started_ns
            parts.append(head)
            parts.append(ids[pid])
            parts.append(tail)
            if after is not None:
                parts.append(self._timestamp())
                parts.append(after)
        self._pid = pid
        return parts

    def _qos0_parts(self, count: int) -> list[bytes]:
        if self._cycle:
            return self._cycle_parts(repeat(0, count), acked=False)
        head, tail, after = self._head, self._tail, self._tail_after_ts
        if after is None:
            return [head, tail] * count
        parts: list[bytes] = []
        for _ in range(count):
            parts.append(head)
            parts.append(tail)
            parts.append(self._timestamp())
            parts.append(after)
        return parts

    def _cycle_parts(self, started: Iterable[int], *, acked: bool) -> list[bytes]:
        """One message per start time, each the next of the template's cycle (a gateway's
        sub-devices taking turns) with its timestamps filled in; ``acked`` (QoS 1): each
        under the next packet id not in flight."""
        cycle, turn, inflight, ids, pid = self._cycle, self._turn, self.inflight, PACKET_IDS, self._pid
        parts: list[bytes] = []
        for started_ns in started:
            head, first, *rest = cycle[turn]
            turn = turn + 1 if turn + 1 < len(cycle) else 0
            parts.append(head)
            if acked:
                pid = pid % MAX_PACKET_ID + 1
                while pid in inflight:
                    pid = pid % MAX_PACKET_ID + 1
                inflight[pid] = started_ns
                parts.append(ids[pid])
            parts.append(first)
            if rest:
                ts = self._timestamp()
                for piece in rest:
                    parts.append(ts)
                    parts.append(piece)
        self._turn, self._pid = turn, pid
        return parts

    def _timestamp(self) -> bytes:
        """Now in milliseconds, but always after this device's previous one: no two of its
        messages share a row in a (device, key, ts) table."""
        ts = time.time_ns() // 1_000_000
        if ts <= self._last_ts:
            ts = self._last_ts + 1
        self._last_ts = ts
        return b"%013d" % ts

    def ping(self) -> None:
        if self._transport is not None and self.open:
            self._transport.write(PINGREQ_PACKET)

    def write(self, data: bytes) -> None:
        if self._transport is not None and self.open:
            self._transport.write(data)

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    def disconnect(self) -> None:
        """DISCONNECT, then close once written; what is still unacknowledged is the owner's to count."""
        if self._transport is not None:
            if self.open:
                self._transport.write(DISCONNECT_PACKET)
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a registered subclass
        self.open = True
        self._transport.write(self._connect)

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        end = len(data)
        i = 0
        inflight = self.inflight
        started: list[int] = []
        failures: list[int] | None = None
        try:
            while i + 2 <= end:
                kind = data[i]
                length = data[i + 1]
                if length < 0x80:
                    body = i + 2
                else:
                    length, header = remaining_length(data, i + 1, end)
                    if length < 0:
                        break
                    body = i + 1 + header
                stop = body + length
                if stop > end:
                    break
                if kind == PUBACK:
                    if length < 2:
                        raise MqttProtocolError("PUBACK without a packet id")
                    at = inflight.pop((data[body] << 8) | data[body + 1], None)
                    if at is None:
                        raise MqttProtocolError("PUBACK for a packet id not in flight")
                    if length > 2 and data[body + 2] >= 0x80:
                        if failures is None:
                            failures = []
                        failures.append(data[body + 2])
                    else:
                        started.append(at)
                else:
                    self._control(kind, data[body:stop])
                i = stop
        except MqttProtocolError as exc:
            self._lose(f"bad packet from the server: {exc}")
            return
        if i < end:
            self._buffer = data[i:]
        if started or failures:
            self.owner.acked(self, started, failures)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self._lose(f"connection lost: {type(exc).__name__}" if exc else "connection closed by the server")

    def _control(self, kind: int, body: bytes) -> None:
        if kind == PINGRESP:
            self.pings_answered += 1
            self.owner.pong(self)
        elif kind == CONNACK:
            self._on_connack(body)
        elif kind == DISCONNECT:  # MQTT 5 only: the server says why
            self._lose(f"DISCONNECT from the server: {reason_name(body[0] if body else 0)}")
        elif kind == SUBACK:
            pass
        else:
            raise MqttProtocolError(f"unexpected packet type {kind >> 4} (first byte 0x{kind:02x})")

    def _on_connack(self, body: bytes) -> None:
        if len(body) < 2 or self.connected.done():
            raise MqttProtocolError("malformed or second CONNACK")
        code = body[1]
        if self.version == MQTT_5 and len(body) > 2:
            props, _ = read_properties(body, 2)
            receive_maximum = props.get(PROPERTY_RECEIVE_MAXIMUM)
            if isinstance(receive_maximum, int) and 0 < receive_maximum < self.window:
                self.window = receive_maximum
        self.connected.set_result(code)
        if code:
            self._lose(connack_error(self.version, code))

    def _lose(self, reason: str) -> None:
        """Close for good and tell the owner, once, which messages were lost."""
        if not self.open:
            return
        self.open = False
        if self._transport is not None:
            self._transport.abort()
        self.lost_reason = reason
        if not self.connected.done():
            self.connected.set_result(-1)
        lost = list(self.inflight.values())
        self.inflight.clear()
        self.owner.closed(self, reason, lost)
