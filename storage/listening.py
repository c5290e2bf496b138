"""A connection that LISTENs on one PostgreSQL channel, and comes back when it is lost.

LISTEN needs a connection of its own: a pooled one would lose it at reset. While
the connection is down, notifications are lost, so ``on_connect`` runs after every
(re)connection, once the LISTEN is in place, for the owner to catch up on what it
may have missed (the certificate watch reloads; the downlink bus has nothing to redo).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from fleetgate.core.retry import Backoff, Outage

log = logging.getLogger(__name__)
_FIRST_DELAY = 0.1


class ListeningConnection:
    def __init__(
        self,
        url: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_connect: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
        retry_max: float = 5.0,
    ) -> None:
        self._url = url
        self._channel = channel
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._retry_max = retry_max
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.connection: asyncpg.Connection | None = None  # while connected and listening

    async def start(self) -> None:
        """Begin listening; returns once the first connection is made (or the first attempt failed)."""
        self._task = asyncio.create_task(self._run(), name=f"listen-{self._channel}")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = Backoff(_FIRST_DELAY, max(self._retry_max, _FIRST_DELAY), jitter=0.2)
        outage = Outage(log)
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._url)
            except (OSError, asyncpg.PostgresError) as exc:
                outage.failed("LISTEN %s cannot connect, retrying with back-off: %s", self._channel, exc)
                self._ready.set()
                await asyncio.sleep(backoff.next())
                continue
            listening = False
            try:
                conn.add_termination_listener(lambda _: lost.set())
                # Listen first, then catch up: a change in between is not missed.
                await conn.add_listener(self._channel, self._notified)
                if self._on_connect is not None:
                    await self._on_connect(conn)
                self.connection, listening = conn, True
                self._ready.set()
                outage.recovered("LISTEN %s listening again", self._channel)
                backoff.reset()
                await lost.wait()
                outage.failed("LISTEN %s lost its connection, reconnecting", self._channel)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                outage.failed("LISTEN %s lost its connection: %s", self._channel, exc)
            finally:
                self.connection = None
                if not conn.is_closed():
                    await conn.close()
            if not listening:  # lost while setting up: again at once could spin
                self._ready.set()
                await asyncio.sleep(backoff.next())

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)
