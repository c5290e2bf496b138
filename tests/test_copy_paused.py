"""A COPY larger than asyncpg's 512 KiB chunks, its backend terminated while the socket is
full: under uvloop (what ``iot-gateway serve`` runs) and asyncio's loop, the pipeline's write
fails at once, is retried, and the batch is stored once; nothing hangs, and no future is left
behind for asyncio to report ("Future exception was never retrieved").

The COPY is held by a row of its batch that another transaction inserted and has not
committed: its backend waits on that transaction's lock while the client's data piles up.
asyncpg writes a COPY's chunks without yielding to the loop until the transport pauses
it, so by the time its backend is seen waiting, the client has written all it could.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import uvloop

from fleetgate.core.ingest import IngestPipeline, IngestSettings
from fleetgate.core.telemetry_model import KeyValue, Reading, TelemetryMessage, ValueType
from fleetgate.storage.database import open_pool
from fleetgate.storage.telemetry import KeyDictionary, TelemetryWriter
from tests.support import Tenant

# 60,000 rows of 250 characters: about 17 MB, more than a loopback TCP socket or a Unix
# socket buffers, so that the COPY fills the socket while its backend waits.
READINGS = 60_000
TEXT = "x" * 250
FIRST_TS = 1_767_312_000_000  # 2026-01-02: the warm-up row and the batch share a partition
BOUND = 60.0  # the whole scenario's, whatever happens: a hang fails the test

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def message(device: str) -> TelemetryMessage:
    return TelemetryMessage(device, tuple(
        Reading(FIRST_TS + i, (KeyValue("text", ValueType.STRING, TEXT),)) for i in range(READINGS)))


async def copy_waiting(admin: asyncpg.Connection, app: str) -> int:
    """The pid of the application's COPY once its backend waits on a lock. PostgreSQL tells
    no one when a backend starts waiting, so its activity is looked at until it does."""
    while True:
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' "
            "AND query LIKE 'COPY %'", app)
        if pid is not None:
            return pid
        await asyncio.sleep(0.01)  # the server's state, which nothing here can await


async def scenario(database_url: str, tenant: Tenant) -> tuple[list[dict[str, Any]], int, int, int]:
    app = "fleetgate-copy-paused-" + secrets.token_hex(3)
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    separator = "&" if "?" in database_url else "?"
    pool = await open_pool(f"{database_url}{separator}application_name={app}", 2, run_migrations=False)
    admin = await asyncpg.connect(database_url)
    locker = await asyncpg.connect(database_url)
    pipeline = IngestPipeline(TelemetryWriter(pool, KeyDictionary()), IngestSettings(
        capacity_rows=2 * READINGS, batch_max_rows=READINGS, batch_max_age=0.001))
    pipeline.start()
    try:
        async with asyncio.timeout(BOUND):
            device = "dev-" + secrets.token_hex(8)
            await admin.execute(
                "INSERT INTO devices (id, project_id, product_id, name, created_at) VALUES ($1, $2, $3, $1, 0)",
                device, tenant.project_id, tenant.product_id)
            # One row stored first: its key, project and partition exist, and the locker copies them.
            warm = TelemetryMessage(device, (Reading(FIRST_TS - 1, (KeyValue("text", ValueType.STRING, "w"),)),))
            await pipeline.submit(warm, wait_stored=True)  # type: ignore[misc]
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute(
                "INSERT INTO ts_kv (device_id, key, ts, project_no, str_v) "
                "SELECT device_id, key, $2, project_no, 'held' FROM ts_kv WHERE device_id = $1", device, FIRST_TS)
            stored = pipeline.submit(message(device), wait_stored=True)
            assert stored is not None
            pid = await copy_waiting(admin, app)
            terminated = await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            await transaction.rollback()
            await stored  # retried on a new connection: acknowledged once it is stored
            rows, distinct = await admin.fetchrow(
                "SELECT count(*) FILTER (WHERE str_v = $3), count(DISTINCT ts) FROM ts_kv "
                "WHERE device_id = $1 AND ts >= $2", device, FIRST_TS, TEXT)
    finally:
        await pipeline.stop(5.0)
        await locker.close()
        await admin.close()
        await pool.close()
        gc.collect()
        await asyncio.sleep(0)  # one turn, for the done callbacks the collection scheduled
    return reported, int(terminated), rows, distinct


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_copy_cut_off_while_its_socket_is_full_is_retried_and_stored_once(
        loop: str, database_url: str, tenant: Tenant) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        reported, terminated, rows, distinct = runner.run(scenario(database_url, tenant))
    assert terminated == 1
    assert rows == READINGS and distinct == READINGS
    assert not reported, [c.get("message") for c in reported]
