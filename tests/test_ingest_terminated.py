"""The COPY writer while its backends are terminated again and again (pg_terminate_backend):
every batch either commits or fails with Unavailable, and no future is left behind for
asyncio to report ("Future exception was never retrieved")."""

from __future__ import annotations

import asyncio
import gc
import secrets
from typing import Any

import pytest

from fleetgate.core.errors import Unavailable
from fleetgate.core.telemetry_model import KeyValue, Reading, TelemetryMessage, ValueType
from fleetgate.storage import database, telemetry
from fleetgate.storage.database import open_pool
from fleetgate.storage.telemetry import KeyDictionary, TelemetryWriter

APP = "fleetgate-terminated-" + secrets.token_hex(3)
ROWS = 2_000  # a batch: one COPY chunk (no wait for the socket to drain)
MAX_BATCHES = 2_000  # the loop's bound, whatever happens
TERMINATIONS = 60
CADENCE = 0.05  # between two rounds of pg_terminate_backend


async def register(pool, tenant) -> str:
    """A device of the tenant's project: the writer stores the rows of registered devices only."""
    device_id = "dev-" + secrets.token_hex(8)
    await pool.execute("INSERT INTO devices (id, project_id, product_id, name, created_at) VALUES ($1, $2, $3, $1, 0)",
                       device_id, tenant.project_id, tenant.product_id)
    return device_id


def batch(device: str, first_ts: int) -> list[TelemetryMessage]:
    return [TelemetryMessage(device, tuple(
        Reading(first_ts + i, (KeyValue("n", ValueType.LONG, i),)) for i in range(ROWS)))]


@pytest.mark.parametrize("kept", [0, 2], ids=["pooled", "kept"])
async def test_no_future_is_left_behind_when_backends_are_terminated(
        gateway, tenant, database_url, monkeypatch: pytest.MonkeyPatch, kept: int) -> None:
    """With each batch's connection handed back to the pool, and with the writers keeping theirs
    (storage/kept_connections.py), which the terminations then reach while they sit idle."""
    device = await register(gateway.services.pool, tenant)
    discarded = 0

    def counted_discard(conn: Any) -> None:
        nonlocal discarded
        discarded += 1
        database.discard(conn)

    # Counted, so that the test fails if the race it is about was never met.
    monkeypatch.setattr(telemetry, "discard", counted_discard)
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    separator = "&" if "?" in database_url else "?"
    pool = await open_pool(f"{database_url}{separator}application_name={APP}", 4, run_migrations=False)
    try:
        writer = TelemetryWriter(pool, KeyDictionary(), kept=kept)
        stop = asyncio.Event()
        outcomes = {"stored": 0, "unavailable": 0}

        async def write(offset: int) -> None:
            for i in range(MAX_BATCHES):
                if stop.is_set():
                    return
                try:
                    await writer.write(batch(device, 1_767_225_600_000 + (offset + 2 * i) * ROWS), [])
                    outcomes["stored"] += 1
                except Unavailable:
                    outcomes["unavailable"] += 1

        async def terminate() -> int:
            ended = 0
            conn = await gateway.services.pool.acquire()
            try:
                for _ in range(TERMINATIONS):
                    ended += await conn.fetchval(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = $1", APP)
                    await asyncio.sleep(CADENCE)  # the fault's cadence
            finally:
                await gateway.services.pool.release(conn)
                stop.set()
            return ended

        writers = [asyncio.create_task(write(offset)) for offset in (0, 1)]
        ended = await terminate()
        await asyncio.gather(*writers)
        await writer.close()
    finally:
        await asyncio.wait_for(pool.close(), 10)  # it waits for every connection to be handed back
        gc.collect()
        await asyncio.sleep(0)  # one turn, for the done callbacks the collection scheduled
        loop.set_exception_handler(previous)
    assert ended > 0 and outcomes["stored"] > 0 and outcomes["unavailable"] > 0, (ended, outcomes)
    assert discarded > 0, f"no COPY met a connection in an unknown state: {outcomes}"
    assert not reported, [c.get("message") for c in reported]
