"""What the retention tests share: a database of their own, projects with a device, a fixed clock."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import pytest

from fleetgate.storage.database import open_pool

DAY = 86_400_000
# A fixed "now", the months around it made by the tests.
NOW = int(datetime(2101, 1, 1, tzinfo=UTC).timestamp() * 1000)


class FixedClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms


@pytest.fixture
async def isolated(gateway, database_url):
    """A database of its own (same server): retention acts on every project and partition,
    so it must not see the other tests' data."""
    name = "retention_" + secrets.token_hex(4)
    await gateway.services.pool.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(database_url)
    pool = await open_pool(urlunsplit(parts._replace(path="/" + name)), 2)
    try:
        yield pool
    finally:
        await pool.close()
        await gateway.services.pool.execute(f"DROP DATABASE {name}")


async def project_with_device(pool, ttl_days: int | None) -> tuple[int, str]:
    """(the project's number, its device's id)"""
    project_id, product_id, device_id = (secrets.token_hex(12) for _ in range(3))
    no = await pool.fetchval(
        "INSERT INTO projects (id, name, created_at, telemetry_ttl_days) VALUES ($1, $2, 0, $3) RETURNING no",
        project_id, "ret-" + project_id, ttl_days)
    await pool.execute("INSERT INTO products (id, project_id, name, created_at) VALUES ($1, $2, 'p', 0)",
                       product_id, project_id)
    await pool.execute("INSERT INTO devices (id, project_id, product_id, name, created_at) VALUES ($1, $2, $3, 'd', 0)",
                       device_id, project_id, product_id)
    return no, device_id
