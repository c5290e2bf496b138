"""Retention, enforced at an interval by a task the gateway owns: each project's expired
telemetry partitions dropped (whole months; rows only for a project's shorter time-to-live in the
month layout), old audit records and finished persistent RPC calls deleted."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from fleetgate.core import metrics
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import GatewayError
from fleetgate.core.tasks import OwnedTasks

log = logging.getLogger(__name__)


class RetentionPort(Protocol):
    async def enforce(self, now_ms: int) -> Any: ...


class Retention:
    def __init__(self, store: RetentionPort, interval: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._tasks = OwnedTasks()

    def start(self) -> None:
        self._tasks.spawn(self._every_interval())

    async def stop(self) -> None:
        await self._tasks.finish()

    async def run_once(self) -> Any:
        outcome = await self._store.enforce(self._clock.now_ms())
        if outcome.skipped:
            return outcome
        metrics.RETENTION_DROPPED.inc(len(outcome.partitions_dropped))
        # Rows of telemetry are deleted only in the month layout, for a shorter time-to-live.
        metrics.RETENTION_DELETED.labels("ts_kv").inc(outcome.telemetry_rows_deleted)
        metrics.RETENTION_DELETED.labels("audit_log").inc(outcome.audit_rows_deleted)
        metrics.RETENTION_DELETED.labels("rpc_calls").inc(outcome.rpc_calls_deleted)
        if (outcome.partitions_dropped or outcome.audit_rows_deleted or outcome.rpc_calls_deleted
                or outcome.telemetry_rows_deleted):
            log.info("retention: dropped %s, deleted %d telemetry rows, %d audit rows and %d persistent RPC calls",
                     ", ".join(outcome.partitions_dropped) or "no partition", outcome.telemetry_rows_deleted,
                     outcome.audit_rows_deleted, outcome.rpc_calls_deleted)
        return outcome

    async def _every_interval(self) -> None:
        while True:
            try:
                await self.run_once()
            except GatewayError as exc:
                log.warning("retention not enforced this time: %s", exc.message)
            await asyncio.sleep(self._interval)
