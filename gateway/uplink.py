"""What devices send, the same for every protocol: telemetry, client attributes, attribute requests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway import codec, metrics
from gateway.codec import PayloadLimits
from gateway.ingest import IngestPipeline
from gateway.model import AttributeMessage, AttributeScope, DeviceIdentity, TelemetryMessage
from gateway.ports import AttributeReader


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

    async def telemetry(self, device: DeviceIdentity, payload: Any, protocol: str) -> None:
        """Store a decoded telemetry payload; returns when it is acknowledgeable."""
        readings = codec.telemetry_from_json(payload, now_ms(), self.limits)
        message = TelemetryMessage(device.device_id, readings)
        await self._submit(message, protocol, "telemetry")

    async def attributes(self, device: DeviceIdentity, payload: Any, protocol: str) -> None:
        values = codec.attributes_from_json(payload, self.limits)
        message = AttributeMessage(device.device_id, AttributeScope.CLIENT, now_ms(), values)
        await self._submit(message, protocol, "attributes")

    async def _submit(self, message: TelemetryMessage | AttributeMessage, protocol: str, kind: str) -> None:
        future = self._pipeline.submit(message, wait_stored=self._ack_stored)
        metrics.MESSAGES.labels(protocol, kind).inc()
        metrics.DATAPOINTS.labels(protocol).inc(message.rows)
        if future is not None:
            await future

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
