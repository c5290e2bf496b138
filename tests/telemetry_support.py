"""What reached ts_kv for a device, and a way to hold the telemetry writer back while a test
watches what is (not) acknowledged meanwhile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from tests.support import Tenant

PENDING = 0.5  # how long "not acknowledged" is watched for


async def stored(gateway: Any, tenant: Tenant, name: str) -> dict[str, str]:
    """The device's stored telemetry, key -> value as text."""
    rows = await gateway.services.pool.fetch(
        "SELECT k.key, coalesce(t.long_v::text, t.dbl_v::text, t.str_v, t.bool_v::text) AS v FROM ts_kv t "
        "JOIN key_dictionary k ON k.key_id = t.key JOIN devices d ON d.id = t.device_id "
        "WHERE d.name = $1 AND d.project_id = $2", name, tenant.project_id)
    return {r["key"]: r["v"] for r in rows}


async def key_rows(gateway: Any, tenant: Tenant, name: str, key: str) -> int:
    """How many rows of one key the device has."""
    return await gateway.services.pool.fetchval(
        "SELECT count(*) FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key JOIN devices d ON d.id = t.device_id "
        "WHERE d.name = $1 AND d.project_id = $2 AND k.key = $3", name, tenant.project_id, key)


@asynccontextmanager
async def writes_blocked(url: str) -> AsyncIterator[None]:
    """Hold a lock the writer needs, from another session, until the block exits."""
    conn = await asyncpg.connect(url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("LOCK TABLE ts_kv IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
