"""A session's acknowledgement queue: in the order the PUBLISHes came, written together once stored."""

from __future__ import annotations

import asyncio

from fleetgate.protocols.mqtt import codec
from fleetgate.protocols.mqtt.acks import AckQueue
from fleetgate.protocols.mqtt.packets import Reason


def puback(packet_id: int) -> bytes:
    return codec.encode_puback(packet_id, Reason.SUCCESS, 4)


def queue() -> tuple[AckQueue, list[bytes]]:
    written: list[bytes] = []
    return AckQueue(written.append, lambda: None, lambda: None), written


async def test_stored_acknowledgements_leave_in_order_in_one_write() -> None:
    acks, written = queue()
    first, second = acks.waiting(1, 1), acks.waiting(2, 1)
    second.stored()
    await asyncio.sleep(0)  # the pass that flushes what commits made ready
    assert written == []  # the second waits for the first (MQTT-4.6.0-2)
    first.stored()
    assert written == []  # not in the commit's own pass: one write for all a commit made ready
    await asyncio.sleep(0)
    assert written == [puback(1) + puback(2)]
    assert acks.in_flight == 0


async def test_an_answer_needing_no_commit_still_waits_for_those_before_it() -> None:
    acks, written = queue()
    stored = acks.waiting(1, 1)
    acks.answer(2, 1, Reason.TOPIC_NAME_INVALID)
    assert written == []
    stored.stored()
    await asyncio.sleep(0)
    assert written == [puback(1) + codec.encode_puback(2, Reason.TOPIC_NAME_INVALID, 4)]


async def test_a_message_not_stored_gets_no_acknowledgement() -> None:
    failures: list[None] = []
    written: list[bytes] = []
    acks = AckQueue(written.append, lambda: None, lambda: failures.append(None))
    acks.waiting(1, 1).failed(ConnectionError("the database went away"))
    await asyncio.sleep(0)
    assert written == [] and failures == [None]  # the session closes: the client sends it again
