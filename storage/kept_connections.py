"""Pooled connections a hot writer keeps between its statements instead of handing each back.

asyncpg's ``Pool.release`` shields the release in a task of its own, so every
``async with pool.acquire()`` ends with one more task and at least one more pass of
the event loop before the block is left. For the ingest writer that pass sits between
a batch's commit and its acknowledgements, on every batch, and costs about 40 us of
CPU with it (measured: a 63-row COPY took 177 to 193 us of the client's CPU through
the pool, 131 to 141 us on a connection kept). So the writer takes a connection, and
after a write that went well keeps it for its next batch. A connection goes back to
the pool when a write on it failed (the pool resets it, or replaces one that closed),
when more are kept than ``limit``, and when the writer closes.
"""

from __future__ import annotations

import asyncpg


class KeptConnections:
    def __init__(self, pool: asyncpg.Pool, limit: int) -> None:
        self._pool = pool
        # No more than the writers ever use at once, and never the whole pool.
        self._limit = limit
        self._idle: list[asyncpg.Connection] = []

    async def take(self) -> asyncpg.Connection:
        """A kept connection that is still open, else one from the pool."""
        while self._idle:
            conn = self._idle.pop()
            if _open(conn):
                return conn
            await self._pool.release(conn)  # closed under us (a restart): the pool forgets it
        return await self._pool.acquire()

    def keep(self, conn: asyncpg.Connection) -> bool:
        """After a write that went well: kept for the next one, unless enough are. False when
        it was not kept: then the caller gives it back."""
        if len(self._idle) >= self._limit:
            return False
        self._idle.append(conn)
        return True

    async def give_back(self, conn: asyncpg.Connection) -> None:
        """To the pool: after a failed write, or one more than is kept."""
        await self._pool.release(conn)

    async def close(self) -> None:
        """Hand every kept connection back: before the pool closes, which waits for them."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._pool.release(conn)


def _open(conn: asyncpg.Connection) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # the pool took it back already, as it closed
        return False
