"""Duplicate detection for confirmable requests, in about 200 bytes a request instead of aiocoap's 3 KiB.

A CoAP server remembers every request's (sender, message id) for EXCHANGE_LIFETIME, and
the answer it gave, so that a retransmission (the device lost the ACK) is answered again
from that memory instead of being processed twice. aiocoap's message manager does this
in ``_recent_messages``: it keeps the request's address object as the key, one event-loop
timer per request, and the response Message, which references the whole request (options,
payload, address): about 3 KiB a request, 450 MB for a 30 s window at 5,000 requests a
second.

:class:`DedupWindow` keeps the same facts smaller:

- the key is (host, port << 16 | message id): the sender's address as aiocoap compares it
  (host and port; the IPv6 flow label is ignored), the host string interned;
- the answer is kept as the bytes that went on the wire (an ACK: 2.01 piggybacked, or the
  empty ACK of a separate response), about 50 bytes, not as a Message;
- expiry needs no timer per request: requests are grouped in time slices of at most 1 s
  (an eighth of the window when shorter), and one timer drops a slice once all of it is
  older than the window. A request is remembered at least ``lifetime`` seconds, at most
  one slice longer.

It replaces two private methods of one message manager instance (``_deduplicate_message``
and ``_store_response_for_duplicates``, aiocoap 0.4's names, checked at install): the
override is confined to this module, and a retransmission is answered as aiocoap answers
it, by handing the stored answer to the manager's ``_send_initially``.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections import deque
from typing import Any

from aiocoap import Message
from aiocoap.message import Direction
from aiocoap.numbers.types import Type

_MAX_SLICE_S = 1.0
_SLICES_PER_WINDOW = 8

Key = tuple[Any, int]


def request_key(remote: Any, mid: int) -> Key:
    """The sender and message id, as small as aiocoap's equality of UDP addresses allows."""
    sockaddr = getattr(remote, "sockaddr", None)
    if sockaddr is None:  # not a UDP address: the address object itself
        return remote, mid
    return sys.intern(sockaddr[0]), sockaddr[1] << 16 | mid


class DedupWindow:
    """The requests one message manager received in the last ``lifetime`` seconds, with their answers."""

    def __init__(self, lifetime: float) -> None:
        if lifetime <= 0:
            raise ValueError("the dedup window must be positive")
        self.lifetime = lifetime
        self._slice_s = min(_MAX_SLICE_S, lifetime / _SLICES_PER_WINDOW)
        self._answers: dict[Key, bytes | None] = {}
        self._slices: deque[tuple[float, list[Key]]] = deque()  # (drop at, keys), oldest first
        self._timer: asyncio.TimerHandle | None = None
        self._manager: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._answers)

    def install(self, manager: Any) -> None:
        """Take over duplicate detection from aiocoap's message manager ``manager``."""
        for name in ("_deduplicate_message", "_store_response_for_duplicates", "_send_initially"):
            if not callable(getattr(manager, name, None)):
                raise RuntimeError(f"aiocoap's message manager has no {name}: unsupported aiocoap version")
        self._manager = manager
        self._loop = asyncio.get_running_loop()
        manager._deduplicate_message = self.seen
        manager._store_response_for_duplicates = self.remember_answer

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._answers.clear()
        self._slices.clear()

    # the two methods of aiocoap's message manager

    def seen(self, message: Message) -> bool:
        """True for a duplicate (a confirmable one is answered again, when its answer is known);
        otherwise the request is remembered and False."""
        key = request_key(message.remote, message.mid)
        answers = self._answers
        if key in answers:
            answer = answers[key]
            if answer is not None and message.mtype is Type.CON:
                replay = Message.decode(answer, message.remote.as_response_address())
                replay.direction = Direction.OUTGOING
                self._manager._send_initially(replay)
            return True
        answers[key] = None
        self._add(key)
        return False

    def remember_answer(self, message: Message) -> None:
        """An outgoing message: kept if it is the first answer to a remembered request (an ACK
        with its message id; a replayed one is already kept)."""
        if message.mtype is not Type.ACK:
            return
        key = request_key(message.remote, message.mid)
        if key in self._answers and self._answers[key] is None:
            self._answers[key] = message.encode()

    # expiry

    def _add(self, key: Key) -> None:
        slices, loop = self._slices, self._loop
        assert loop is not None
        now = loop.time()
        if slices and slices[-1][0] >= now + self.lifetime:
            slices[-1][1].append(key)
            return
        drop_at = (math.floor((now + self.lifetime) / self._slice_s) + 1) * self._slice_s
        slices.append((drop_at, [key]))
        if self._timer is None:
            self._timer = loop.call_at(drop_at, self._expire)

    def _expire(self) -> None:
        loop = self._loop
        assert loop is not None
        self._timer = None
        now = loop.time()
        slices, answers = self._slices, self._answers
        while slices and slices[0][0] <= now:
            for key in slices.popleft()[1]:
                answers.pop(key, None)
        if slices:
            self._timer = loop.call_at(slices[0][0], self._expire)
