"""A session's acknowledgements, leaving in the order their PUBLISHes came (MQTT-4.6.0-2).

Each is ready, or waiting for its message to be stored: the waiting ones are the
ingest pipeline's receipts, told directly when their batch commits. Those that
are ready are written together once per event-loop pass, not once per message.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable

from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.packets import Reason

log = logging.getLogger(__name__)

_NO_IDS: frozenset[int] = frozenset()


class PendingAck:
    """One acknowledgement in the queue: its bytes once ready."""

    __slots__ = ("data", "queue", "packet_id", "qos")

    def __init__(self, data: bytes | None, queue: AckQueue | None = None, packet_id: int = 0, qos: int = 0) -> None:
        self.data = data
        self.queue = queue
        self.packet_id = packet_id
        self.qos = qos

    def stored(self) -> None:
        if self.data is None and self.queue is not None:
            self.queue.stored(self)

    def failed(self, error: BaseException) -> None:
        if self.data is None and self.queue is not None:
            self.queue.not_stored()


class _Stored:
    """The queues that have acknowledgements newly stored, flushed by one callback in the next pass
    of the event loop: in an open loop a batch's commit reaches about as many connections as it
    holds messages, and a handle for each was one more allocation and dispatch a message."""

    __slots__ = ("_loop", "_queues")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queues: list[AckQueue] = []

    def add(self, queue: AckQueue) -> None:
        if not self._queues:
            self._loop.call_soon(self._flush)
        self._queues.append(queue)

    def _flush(self) -> None:
        queues, self._queues = self._queues, []
        for queue in queues:
            try:
                queue._flush_stored()
            except Exception:  # one connection's failure is not the others'
                log.exception("flushing a connection's acknowledgements failed")


_STORED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Stored] = weakref.WeakKeyDictionary()


def _stored_of(loop: asyncio.AbstractEventLoop) -> _Stored:
    stored = _STORED.get(loop)
    if stored is None:
        stored = _STORED[loop] = _Stored(loop)
    return stored


class AckQueue:
    # One a connection, most of them idle: the queue is made on first use (an empty deque is 600 bytes).
    __slots__ = ("_on_failure", "_on_progress", "_scheduled", "_slots", "_stored", "_write", "in_flight", "qos2",
                 "version")

    def __init__(
        self, write: Callable[[bytes], None], on_progress: Callable[[], None], on_failure: Callable[[], None]
    ) -> None:
        self.version = 4
        self.in_flight = 0  # QoS 1 and 2 messages waiting for their commit
        # QoS 2 packet ids stored and not yet released (PUBREL); a set once there is one.
        self.qos2: set[int] | frozenset[int] = _NO_IDS
        self._slots: deque[PendingAck] | None = None
        self._write = write
        self._on_progress = on_progress
        self._on_failure = on_failure
        self._scheduled = False
        self._stored = _stored_of(asyncio.get_running_loop())

    def ready(self, data: bytes) -> None:
        """An acknowledgement that needs no commit: it still waits for those before it."""
        self._queue().append(PendingAck(data))
        self.flush()

    def answer(self, packet_id: int, qos: int, reason: int) -> None:
        """An acknowledgement decided without storage (a refusal, a request): PUBACK for
        QoS 1, PUBREC for QoS 2 (remembered until PUBREL when it succeeded), none for QoS 0."""
        if qos == 1:
            self.ready(codec.encode_puback(packet_id, reason, self.version))
        elif qos == 2:
            if reason < 0x80:
                self._stored_qos2(packet_id)
            self.ready(codec.encode_pubrec(packet_id, reason, self.version))

    def released(self, packet_id: int) -> None:
        """PUBREL: PUBCOMP, with 0x92 (MQTT 5) for an id that was never received."""
        known = packet_id in self.qos2
        if known:
            self.qos2.remove(packet_id)  # type: ignore[union-attr]
        reason = Reason.SUCCESS if known else Reason.PACKET_IDENTIFIER_NOT_FOUND
        self.ready(codec.encode_pubcomp(packet_id, reason, self.version))

    def waiting(self, packet_id: int, qos: int) -> PendingAck:
        """A slot for a message about to be stored: the receipt to give the pipeline."""
        slot = PendingAck(None, self, packet_id, qos)
        self._queue().append(slot)
        self.in_flight += 1
        return slot

    def withdraw(self) -> None:
        """The message of the last slot was refused before it was queued."""
        self._queue().pop()
        self.in_flight -= 1

    def stored(self, slot: PendingAck) -> None:
        if slot.qos == 2:
            self._stored_qos2(slot.packet_id)
            slot.data = codec.encode_pubrec(slot.packet_id, Reason.SUCCESS, self.version)
        else:
            slot.data = codec.encode_puback(slot.packet_id, Reason.SUCCESS, self.version)
        self.in_flight -= 1
        if not self._scheduled:
            self._scheduled = True
            self._stored.add(self)

    def not_stored(self) -> None:
        # No acknowledgement for a message that was not stored: the client sends it again.
        self._on_failure()

    def _flush_stored(self) -> None:
        self._scheduled = False
        self.flush()
        self._on_progress()

    def _stored_qos2(self, packet_id: int) -> None:
        if self.qos2 is _NO_IDS:
            self.qos2 = set()
        self.qos2.add(packet_id)  # type: ignore[union-attr]

    def _queue(self) -> deque[PendingAck]:
        if self._slots is None:
            self._slots = deque()
        return self._slots

    def flush(self) -> None:
        slots = self._slots
        if not slots:
            return
        ready = []
        while slots and slots[0].data is not None:
            ready.append(slots.popleft().data)
        if ready:
            self._write(b"".join(ready))  # type: ignore[arg-type]
