"""The downlink bus over PostgreSQL NOTIFY: every gateway process, on every machine, hears
every event, so a device is reached whichever process holds its connection.

A NOTIFY payload holds under 8,000 bytes. A larger event (an RPC's params, a big
attribute update) is sent as numbered pieces in one statement; pieces of different
events may interleave, so they are put together by event id. Events are JSON with
every character escaped to ASCII, so a piece may end anywhere.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from fleetgate.storage.errors import translated
from fleetgate.storage.listening import ListeningConnection

log = logging.getLogger(__name__)

CHANNEL = "gateway_downlink"
_PIECE = 7_000  # characters of event in one piece, under NOTIFY's 8,000 bytes with the header
_PIECE_MARK = "~"  # a piece: "~{event id}:{index}:{count}:{text}"; a whole event starts with "{"
_ASSEMBLY_SECONDS = 30.0  # pieces of an event still incomplete after this are dropped
_MAX_ASSEMBLING = 1_000


class PgDownlinkBus:
    def __init__(self, url: str, pool: asyncpg.Pool, retry_max: float = 5.0) -> None:
        self._pool = pool
        self.receiver: Callable[[dict[str, Any]], None] | None = None
        self._listening = ListeningConnection(url, CHANNEL, self._notified, retry_max=retry_max)
        # event id -> (first piece's arrival, pieces so far)
        self._assembling: dict[str, tuple[float, dict[int, str]]] = {}

    async def start(self) -> None:
        await self._listening.start()

    async def stop(self) -> None:
        await self._listening.stop()

    def subscribe(self, device_id: str) -> None:
        """Nothing to do: every process hears every event."""

    def unsubscribe(self, device_id: str) -> None:
        pass

    async def publish(self, event: dict[str, Any]) -> None:
        text = json.dumps(event, ensure_ascii=True, separators=(",", ":"))
        with translated():
            if len(text) <= _PIECE:
                await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, text)
                return
            event_id = secrets.token_hex(8)
            pieces = [text[i:i + _PIECE] for i in range(0, len(text), _PIECE)]
            await self._pool.execute(
                "SELECT pg_notify($1, piece) FROM unnest($2::text[]) AS piece",
                CHANNEL,
                [f"{_PIECE_MARK}{event_id}:{i}:{len(pieces)}:{piece}" for i, piece in enumerate(pieces)],
            )

    def _notified(self, payload: str) -> None:
        text = self._assemble(payload) if payload.startswith(_PIECE_MARK) else payload
        if text is None or self.receiver is None:
            return
        try:
            event = json.loads(text)
        except ValueError:
            log.warning("a malformed downlink notification was dropped")
            return
        if isinstance(event, dict):
            self.receiver(event)

    def _assemble(self, payload: str) -> str | None:
        """The whole event once its last piece is in; None until then."""
        try:
            event_id, index, count, text = payload[1:].split(":", 3)
            i, n = int(index), int(count)
        except ValueError:
            log.warning("a malformed downlink piece was dropped")
            return None
        now = time.monotonic()
        if event_id not in self._assembling:
            self._forget_stale(now)
        pieces = self._assembling.setdefault(event_id, (now, {}))[1]
        pieces[i] = text
        if len(pieces) < n:
            return None
        del self._assembling[event_id]
        if pieces.keys() != set(range(n)):
            log.warning("a downlink event with inconsistent pieces was dropped")
            return None
        return "".join(pieces[k] for k in range(n))

    def _forget_stale(self, now: float) -> None:
        """Bound what waits for missing pieces (lost while the connection was down)."""
        stale = [k for k, (since, _) in self._assembling.items() if now - since > _ASSEMBLY_SECONDS]
        for key in stale:
            del self._assembling[key]
        while len(self._assembling) >= _MAX_ASSEMBLING:
            del self._assembling[next(iter(self._assembling))]
