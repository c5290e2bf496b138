"""The connection pool, opened once per process by the composition root."""

from __future__ import annotations

import asyncio
import gc

import asyncpg
import orjson

from fleetgate.storage.errors import translated
from fleetgate.storage.migrate import migrate

_STAGE_TABLE = """CREATE TEMP TABLE IF NOT EXISTS ts_kv_stage (
    device_id text COLLATE "C", key integer, ts bigint, project_no integer, bool_v boolean, long_v bigint,
    dbl_v double precision, str_v text, json_v text) ON COMMIT DELETE ROWS"""


# jsonb's binary form is a version byte (1) and the JSON text. Binary rather than
# text so that the telemetry writer can COPY rows holding JSON values straight into
# ts_kv (binary COPY needs a binary encoder for every column). A str is taken as
# JSON text already serialised (the codec's JSON values), anything else is dumped.
_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: object) -> bytes:
    return _JSONB_VERSION + (value.encode() if isinstance(value, str) else orjson.dumps(value))


def _decode_jsonb(data: bytes) -> object:
    return orjson.loads(data[1:])


# Far above anything one statement writes (a 5,000-row COPY is about 0.5 MB); uvloop
# takes the limit as a C int.
_NEVER_PAUSED = 2**31 - 1


def _never_paused(conn: asyncpg.Connection) -> None:
    """Let the connection's transport take whatever a statement writes, without pausing it.

    asyncpg's COPY writes 512 KiB chunks and waits for the transport's ``resume_writing``
    between two (its executemany too, between bind messages). Nothing calls it once the
    connection is lost: not asyncio's transport, not uvloop's, not asyncpg's
    ``connection_lost``, which fails only the statement's result future. So a COPY paused
    for writing when its backend is terminated or PostgreSQL stops would wait forever.
    Cancelling it is no way out under uvloop: its closed transport raises RuntimeError from
    the CopyFail write, before asyncpg has retrieved that result future ("Future exception
    was never retrieved"). A transport that is never paused makes the COPY wait on its
    result future alone, which a lost connection fails at once with ConnectionDoesNotExistError.
    Nothing is lost by it: every statement here is built from data in memory already
    (a batch's rows), whose encoded form waits in the transport until PostgreSQL reads it.
    asyncpg exposes the transport only as a private attribute.
    """
    transport: asyncio.WriteTransport | None = conn._transport
    if transport is not None and not transport.is_closing():  # uvloop refuses a closed one
        transport.set_write_buffer_limits(high=_NEVER_PAUSED)


async def _init_connection(conn: asyncpg.Connection) -> None:
    _never_paused(conn)
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )
    # The COPY writer stages rows here; it lives as long as the connection.
    await conn.execute(_STAGE_TABLE)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Hand a released connection back as it is, without asyncpg's default reset.

    The default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    at every release: a round trip for every pool call. Nothing here leaves that state
    behind: advisory locks are transaction-scoped, cursors live inside transactions and
    no pooled connection LISTENs or SETs anything (the TEMP stage table is the one piece
    of session state, and meant to stay). asyncpg still rolls back a transaction left
    open before it calls this. Whoever adds session state to pooled connections must
    reset it here.
    """


def discard(conn: asyncpg.Connection) -> None:
    """Close a connection whose protocol state is unknown, so that the pool never hands it out again.

    A backend terminated while its connection sat idle in the pool sends its FATAL
    error some time before its socket closes; a COPY begun in between fails at once
    with InternalClientError, and asyncpg 0.32's ``copy_in`` has by then made the
    future its result was to come through, outside the ``try`` that would have
    failed it (its queries fail theirs). Terminating the connection completes that
    future with ConnectionDoesNotExistError, which nobody awaits: asyncio would log
    "Future exception was never retrieved". So the futures the protocol still holds
    are marked retrieved first, as asyncpg does itself when it abandons a COPY.
    ``gc.get_referents`` lists the protocol's own references only, not the heap's.
    """
    # A pool's proxy lends its connection; once the pool took it back (its socket closed
    # meanwhile), there is nothing left to close.
    target = conn._con if isinstance(conn, asyncpg.pool.PoolConnectionProxy) else conn
    if target is None:
        return
    protocol = getattr(target, "_protocol", None)
    if protocol is not None:
        for held in gc.get_referents(protocol):
            if isinstance(held, asyncio.Future) and not held.done():
                held.add_done_callback(_retrieved)
    target.terminate()


def _retrieved(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


async def probe(url: str) -> None:
    """One connection attempt, closed at once: raises while PostgreSQL accepts none. Refused
    in microseconds while it is down, so an outage can be watched closely for its end."""
    conn = await asyncpg.connect(url)
    await conn.close()


async def ping(pool: asyncpg.Pool) -> None:
    """One round trip on a pooled connection: raises when PostgreSQL does not answer."""
    await pool.fetchval("SELECT 1")


async def open_pool(url: str, size: int, *, run_migrations: bool = True) -> asyncpg.Pool:
    with translated():
        if run_migrations:
            conn = await asyncpg.connect(url)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        # Opened with two connections, and no floor kept afterwards (min_size 0): asyncpg
        # restores a floor from a task of its own, which logs a traceback each time it
        # fails to connect, every second or more while PostgreSQL is down. The writers
        # reconnect as they need, and their outage is one warning and one summary.
        return await asyncpg.create_pool(
            url, init_size=min(2, size), min_size=0, max_size=size, init=_init_connection, reset=_keep_session
        )
