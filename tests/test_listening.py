"""The LISTEN connection (storage/listening.py): back after its backend is terminated, notified
again, and the outage logged as one warning and one summary."""

from __future__ import annotations

import asyncio
import logging
import secrets

import asyncpg

from fleetgate.storage.listening import ListeningConnection
from tests.support import free_port


async def test_a_terminated_connection_comes_back_and_listens_again(database_url, caplog) -> None:
    channel = "test_listening_" + secrets.token_hex(4)
    payloads: asyncio.Queue[str] = asyncio.Queue()
    connections: asyncio.Queue[int] = asyncio.Queue()

    async def connected(conn: asyncpg.Connection) -> None:
        connections.put_nowait(conn.get_server_pid())

    listening = ListeningConnection(database_url, channel, payloads.put_nowait, connected, retry_max=0.2)
    other = await asyncpg.connect(database_url)
    try:
        with caplog.at_level(logging.DEBUG, logger="fleetgate.storage.listening"):
            await listening.start()
            first = await connections.get()
            await other.execute("SELECT pg_terminate_backend($1)", first)
            second = await asyncio.wait_for(connections.get(), 30)
            assert second != first
            await other.execute("SELECT pg_notify($1, 'hello')", channel)
            assert await asyncio.wait_for(payloads.get(), 30) == "hello"
    finally:
        await listening.stop()
        await other.close()
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert [level for level, _ in levels] == [logging.WARNING, logging.INFO], levels
    assert "lost its connection" in levels[0][1] and "listening again after" in levels[1][1]
    assert not any(r.exc_info for r in caplog.records)


async def test_start_returns_when_the_first_attempt_fails(caplog) -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    listening = ListeningConnection(url, "nowhere", lambda _: None, retry_max=0.05)
    with caplog.at_level(logging.WARNING, logger="fleetgate.storage.listening"):
        await listening.start()
        assert listening.connection is None
    await listening.stop()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "cannot connect" in caplog.records[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
