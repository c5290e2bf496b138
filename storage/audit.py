"""The audit log."""

from __future__ import annotations

from typing import Any

import asyncpg

from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.model import AuditRecord
from fleetgate.storage.errors import translated

# The columns audit_values() fills, in its order; storage/devices.py appends a
# provisioning's record in the statement that stores the device.
AUDIT_COLUMNS = "audit_log (ts, project_id, action, outcome, reason, device_id, source, details)"


def audit_values(record: AuditRecord, ts: int) -> tuple[Any, ...]:
    return (ts, record.project_id, record.action, record.outcome, record.reason, record.device_id, record.source,
            record.details)


class AuditStore:
    def __init__(self, pool: asyncpg.Pool, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._pool = pool
        self._clock = clock

    async def record(self, record: AuditRecord) -> None:
        with translated():
            await self._pool.execute(
                f"INSERT INTO {AUDIT_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *audit_values(record, self._clock.now_ms()),
            )
