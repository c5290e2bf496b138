"""The audit log."""

from __future__ import annotations

import time

import asyncpg

from gateway.model import AuditRecord
from storage.errors import translated


class AuditStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, record: AuditRecord) -> None:
        with translated():
            await self._pool.execute(
                """INSERT INTO audit_log (ts, project_id, action, outcome, reason, device_id, source, details)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                time.time_ns() // 1_000_000, record.project_id, record.action, record.outcome, record.reason,
                record.device_id, record.source, record.details,
            )
