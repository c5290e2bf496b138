"""What devices send, the same for every protocol: telemetry, client attributes, attribute requests.

Submitting is synchronous: it returns the future the stored acknowledgement
waits on (or None with ``ack = "accepted"``), so a front-end can answer from a
callback without a task per message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fleetgate.core import codec, metrics
from fleetgate.core.codec import PayloadLimits
from fleetgate.core.ingest import IngestPipeline, Receipt
from fleetgate.core.model import AttributeMessage, AttributeScope, DeviceIdentity, TelemetryMessage
from fleetgate.core.ports import AttributeReader


# One entry per device sending server-stamped telemetry; cleared when this many, which
# costs at most one millisecond's uniqueness for devices then sending.
_MAX_TRACKED_DEVICES = 1_000_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Uplink:
    def __init__(
        self, pipeline: IngestPipeline, attributes: AttributeReader, limits: PayloadLimits, *, ack_stored: bool
    ) -> None:
        self._pipeline = pipeline
        self._attributes = attributes
        self.limits = limits
        self._ack_stored = ack_stored
        self._last_server_ts: dict[str, int] = {}

    def submit_telemetry(
        self, device: DeviceIdentity, payload: Any, protocol: str, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        """Queue a decoded telemetry payload; raises the codec's and the queue's errors.

        With a ``receipt`` it is told when the message may be acknowledged and None is
        returned; without one, the future returned completes then (None: at once)."""
        readings = codec.telemetry_from_json(payload, self._server_ts(device.device_id), self.limits)
        return self._submit(TelemetryMessage(device.device_id, readings), protocol, "telemetry", receipt)

    def _server_ts(self, device_id: str) -> int:
        """The time for readings that carry none: strictly increasing per device, so that two
        messages stored in the same millisecond do not overwrite each other ((device, key, ts)
        is the row's key), and each acknowledged value stays."""
        now = now_ms()
        last = self._last_server_ts.get(device_id, 0)
        ts = now if now > last else last + 1
        if len(self._last_server_ts) >= _MAX_TRACKED_DEVICES:
            self._last_server_ts.clear()
        self._last_server_ts[device_id] = ts
        return ts

    def submit_attributes(
        self, device: DeviceIdentity, payload: Any, protocol: str, receipt: Receipt | None = None
    ) -> asyncio.Future[None] | None:
        values = codec.attributes_from_json(payload, self.limits)
        message = AttributeMessage(device.device_id, AttributeScope.CLIENT, now_ms(), values)
        return self._submit(message, protocol, "attributes", receipt)

    def _submit(
        self, message: TelemetryMessage | AttributeMessage, protocol: str, kind: str, receipt: Receipt | None
    ) -> asyncio.Future[None] | None:
        if receipt is not None and not self._ack_stored:
            future = self._pipeline.submit(message)
            receipt.stored()
        else:
            future = self._pipeline.submit(message, wait_stored=self._ack_stored, receipt=receipt)
        metrics.MESSAGES.counts[(protocol, kind)] += 1
        metrics.DATAPOINTS.counts[(protocol,)] += message.rows
        return future

    async def read_attributes(
        self, device: DeviceIdentity, client_keys: list[str] | None, shared_keys: list[str] | None
    ) -> dict[str, dict[str, Any]]:
        """ThingsBoard's attribute request: no keys at all means every client and shared
        attribute; otherwise only the scopes whose keys were named. Empty sections are omitted."""
        if not client_keys and not shared_keys:
            client_keys = shared_keys = None
            wanted = {"client": True, "shared": True}
        else:
            wanted = {"client": bool(client_keys), "shared": bool(shared_keys)}
        result: dict[str, dict[str, Any]] = {}
        for section, scope, keys in (
            ("client", AttributeScope.CLIENT, client_keys),
            ("shared", AttributeScope.SHARED, shared_keys),
        ):
            if wanted[section]:
                values = await self._attributes.read_attributes(device.device_id, scope, keys)
                if values:
                    result[section] = {v.key: v.value for v in values}
        return result


def split_keys(raw: str | None) -> list[str] | None:
    """ThingsBoard's comma-separated key lists: "a, b,,c" -> ["a", "b", "c"]."""
    if raw is None:
        return None
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    return keys or None
