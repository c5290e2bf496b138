"""Devices' OTA progress, from their own telemetry: ``fw_state`` (DOWNLOADING, DOWNLOADED,
VERIFIED, UPDATING, UPDATED, FAILED), ``fw_error``, ``current_fw_title`` and
``current_fw_version`` (``sw_*`` for software), as ThingsBoard's SDKs send them.

The telemetry is stored as any other; this keeps, beside it, each device's latest state per
type with the package it was assigned then, which the management API counts per package.
Saving happens after the message is answered, in tasks this owns. The devices in each state,
all packages together, are in /metrics (gateway_ota_devices): one GROUP BY of the stored states
at an interval, whichever process the devices report to, rather than a count kept per process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from fleetgate.core.errors import GatewayError
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.ota_metrics import DEVICES, STATE_REPORTS
from fleetgate.core.ota_model import OtaState, OtaType, Report
from fleetgate.core.ports import OtaStore
from fleetgate.core.tasks import OwnedTasks
from fleetgate.core.telemetry_model import Reading

log = logging.getLogger(__name__)
_STATES = {s.value: s for s in OtaState}
_MAX_ERROR = 1024


def mentions_ota(body: bytes) -> bool:
    """Whether a telemetry body may carry OTA keys: one C-level scan, on every message."""
    return b"_state" in body or b"current_" in body


def reports(readings: Sequence[Reading]) -> dict[OtaType, Report]:
    """The OTA keys of a message, per type (the latest reading's value wins)."""
    found: dict[OtaType, dict[str, object]] = {}
    times: dict[OtaType, int] = {}
    for reading in readings:
        for kv in reading.values:
            for kind in OtaType:
                p = kind.prefix
                if kv.key in (f"{p}_state", f"{p}_error", f"current_{p}_title", f"current_{p}_version"):
                    found.setdefault(kind, {})[kv.key] = kv.value
                    times[kind] = max(times.get(kind, 0), reading.ts)
    result = {}
    for kind, values in found.items():
        p = kind.prefix
        raw_state = values.get(f"{p}_state")
        state = _STATES.get(raw_state) if isinstance(raw_state, str) else None
        error = values.get(f"{p}_error")
        result[kind] = Report(
            state,
            str(error)[:_MAX_ERROR] if error is not None else None,
            _text(values.get(f"current_{p}_title")),
            _text(values.get(f"current_{p}_version")),
            times[kind],
        )
    return result


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:255]


class OtaProgress:
    def __init__(self, store: OtaStore, gauge_interval: float = 0.0) -> None:
        self._store = store
        self._gauge_interval = gauge_interval  # 0: gateway_ota_devices is not refreshed
        self._gauge_labels: set[tuple[str, str]] = set()
        self._refresher = OwnedTasks()
        # Reports being saved after their message was answered: awaited by settled, ended by close.
        self._tasks = OwnedTasks()
        self._pending: set[asyncio.Task[None]] = set()

    def reported(self, device: DeviceIdentity, readings: Sequence[Reading]) -> None:
        for kind, report in reports(readings).items():
            if report.state is not None:
                STATE_REPORTS.labels(kind.value, report.state.value).inc()
            task = self._tasks.spawn(self._save(device, kind, report))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _save(self, device: DeviceIdentity, kind: OtaType, report: Report) -> None:
        try:
            await self._store.save_report(device.device_id, kind, report)
        except GatewayError as exc:
            log.warning("an OTA state report was not kept: %s", exc.message, extra={"device_id": device.device_id})

    def start(self) -> None:
        if self._gauge_interval:
            self._refresher.spawn(self._refresh_every_interval())

    async def refresh_gauge(self) -> None:
        """Set gateway_ota_devices from the stored states (a state no device is in any more: 0)."""
        totals = {(kind.value, state): n for (kind, state), n in (await self._store.state_totals()).items()}
        for labels in self._gauge_labels - totals.keys():
            DEVICES.labels(*labels).set(0)
        for labels, n in totals.items():
            DEVICES.labels(*labels).set(n)
        self._gauge_labels |= totals.keys()

    async def _refresh_every_interval(self) -> None:
        while True:
            try:
                await self.refresh_gauge()
            except GatewayError as exc:
                log.warning("the OTA state gauge was not refreshed: %s", exc.message)
            await asyncio.sleep(self._gauge_interval)

    async def settled(self) -> None:
        """Return once every report received so far is saved (or dropped)."""
        if self._pending:
            await asyncio.wait(set(self._pending))

    async def close(self, timeout: float = 5.0) -> None:
        await self._refresher.finish()
        await self._tasks.finish(timeout)
