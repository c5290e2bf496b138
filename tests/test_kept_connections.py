"""The connections the ingest writer keeps between batches, against a real pool."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from fleetgate.storage.database import open_pool
from fleetgate.storage.kept_connections import KeptConnections


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(database_url, 3, run_migrations=False)
    try:
        yield pool
    finally:
        await asyncio.wait_for(pool.close(), 10)  # waits for every connection to be handed back


async def test_a_kept_connection_is_the_next_one_taken(pool: asyncpg.Pool) -> None:
    kept = KeptConnections(pool, 2)
    first = await kept.take()
    backend = await first.fetchval("SELECT pg_backend_pid()")
    assert kept.keep(first)
    again = await kept.take()
    assert again is first and await again.fetchval("SELECT pg_backend_pid()") == backend
    assert kept.keep(again)
    await kept.close()


async def test_no_more_are_kept_than_the_limit(pool: asyncpg.Pool) -> None:
    kept = KeptConnections(pool, 1)
    a, b = await kept.take(), await kept.take()
    assert kept.keep(a)
    assert not kept.keep(b)  # the caller gives it back
    await kept.give_back(b)
    assert await kept.take() is a
    await kept.give_back(a)
    await kept.close()


async def test_a_kept_connection_that_closed_is_replaced(pool: asyncpg.Pool, database_url: str) -> None:
    kept = KeptConnections(pool, 2)
    conn = await kept.take()
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    closed = asyncio.Event()
    conn.add_termination_listener(lambda _conn: closed.set())
    assert kept.keep(conn)
    killer = await asyncpg.connect(database_url)
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", backend)
    finally:
        await killer.close()
    # The backend's end reaches the client as its socket closes (and the pool takes it back).
    await asyncio.wait_for(closed.wait(), 10)
    fresh = await kept.take()
    assert await fresh.fetchval("SELECT pg_backend_pid()") != backend
    await kept.give_back(fresh)
    await kept.close()


async def test_closing_hands_every_kept_connection_back(pool: asyncpg.Pool) -> None:
    kept = KeptConnections(pool, 3)
    taken = [await kept.take() for _ in range(3)]
    for conn in taken:
        assert kept.keep(conn)
    await kept.close()
    # The pool (of 3) has them all again.
    again = [await asyncio.wait_for(pool.acquire(), 5) for _ in range(3)]
    for conn in again:
        await pool.release(conn)
