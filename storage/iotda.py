"""IoTDA's device side in PostgreSQL: certificate-bound devices, the device message log, the shadow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from fleetgate.core.codec import without_nul
from fleetgate.core.errors import Conflict, CredentialsTaken, NameTaken, NodeIdTaken
from fleetgate.core.iotda_ports import DesiredService, DeviceMessage, Direction, MessageStatus
from fleetgate.core.model import Device
from fleetgate.storage.errors import translated

_CREATE_BOUND = """
    WITH device AS (
        INSERT INTO devices (id, project_id, product_id, name, label, gateway, created_at, node_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $9) RETURNING id
    )
    INSERT INTO device_certificates (fingerprint, device_id, project_id, common_name, not_after, created_at)
    SELECT $8, id, $2, '', 0, $7 FROM device"""
_CLASHES: dict[str, type[Conflict]] = {
    "devices_project_id_name_key": NameTaken,
    "device_certificates_pkey": CredentialsTaken,
    "devices_product_node_idx": NodeIdTaken,
}
# Merge into the desired properties; a null removes one. The version counts the changes.
_SET_DESIRED = """
    INSERT INTO device_shadow_desired AS s (device_id, service_id, properties, event_time, version)
    VALUES ($1, $2, jsonb_strip_nulls($3::jsonb), $4, 1)
    ON CONFLICT (device_id, service_id) DO UPDATE
        SET properties = jsonb_strip_nulls(s.properties || EXCLUDED.properties),
            event_time = EXCLUDED.event_time, version = s.version + 1
        WHERE $5::bigint IS NULL OR s.version = $5
    RETURNING properties, event_time, version"""

# A PENDING message down past its expiration is TIMEOUT (IoTDA's state), finished when it expired.
_EXPIRE = """
    UPDATE device_messages SET status = 'TIMEOUT', finished_at = expires_at, claimed_at = NULL
    WHERE device_id = $1 AND status = 'PENDING' AND expires_at <= $2"""
# The oldest PENDING message not claimed since $3, claimed now; SKIP LOCKED: another process
# taking one for the same device at once takes the next.
_TAKE = """
    UPDATE device_messages SET claimed_at = $2
    WHERE (device_id, id) = (
        SELECT device_id, id FROM device_messages
        WHERE device_id = $1 AND status = 'PENDING' AND expires_at IS NOT NULL
              AND (claimed_at IS NULL OR claimed_at <= $3)
        ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING *"""


def _json(value: Any) -> str | None:
    """JSON text for a jsonb parameter (the pool's codec takes a str as JSON already written);
    U+0000, which jsonb cannot hold, is dropped from its strings."""
    if value is None:
        return None
    text = orjson.dumps(value).decode()
    return orjson.dumps(without_nul(value)).decode() if "\\u0000" in text else text


def _message(r: asyncpg.Record) -> DeviceMessage:
    return DeviceMessage(
        id=r["id"], device_id=r["device_id"], direction=Direction(r["direction"]), name=r["name"],
        content=r["content"],
        status=MessageStatus(r["status"]), created_at=r["created_at"], kind=r["kind"],
        finished_at=r["finished_at"], error=r["error"], expires_at=r["expires_at"],
    )


class IotdaStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_certificate_device(self, device: Device, fingerprint: str) -> None:
        d = device
        with translated():
            try:
                await self._pool.execute(_CREATE_BOUND, d.id, d.project_id, d.product_id, d.name, d.label, d.gateway,
                                         d.created_at, fingerprint, d.node_id)
            except asyncpg.UniqueViolationError as exc:
                clash = _CLASHES.get(exc.constraint_name or "")
                if clash is None:
                    raise
                raise clash() from None

    async def add_message(self, message: DeviceMessage) -> bool:
        m = message
        with translated():
            added = await self._pool.fetchval(
                """INSERT INTO device_messages
                   (id, device_id, direction, name, kind, content, status, error, created_at, finished_at,
                    expires_at)
                   SELECT $1, $2, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9, $10, $11
                   WHERE EXISTS (SELECT FROM devices WHERE id = $2)
                   ON CONFLICT DO NOTHING RETURNING true""",
                m.id, m.device_id, m.direction.value, m.name, m.kind, _json(m.content), m.status.value,
                _json(m.error), m.created_at, m.finished_at, m.expires_at)
        return bool(added)

    async def finish_message(
        self, device_id: str, message_id: str, status: MessageStatus, finished_at: int,
        error: dict[str, Any] | None = None,
    ) -> None:
        with translated():
            await self._pool.execute(
                "UPDATE device_messages SET status = $3, finished_at = $4, error = $5::jsonb "
                "WHERE device_id = $1 AND id = $2", device_id, message_id, status.value, finished_at, _json(error))

    async def take_message(self, device_id: str, now: int, claim_ms: int) -> DeviceMessage | None:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_EXPIRE, device_id, now)
                r = await conn.fetchrow(_TAKE, device_id, now, now - claim_ms)
        return _message(r) if r else None

    async def release_message(self, device_id: str, message_id: str) -> None:
        with translated():
            await self._pool.execute(
                "UPDATE device_messages SET claimed_at = NULL WHERE device_id = $1 AND id = $2 AND status = 'PENDING'",
                device_id, message_id)

    async def message(self, device_id: str, message_id: str) -> DeviceMessage | None:
        with translated():
            r = await self._pool.fetchrow("SELECT * FROM device_messages WHERE device_id = $1 AND id = $2",
                                          device_id, message_id)
        return _message(r) if r else None

    async def messages(self, device_id: str, direction: Direction, limit: int) -> list[DeviceMessage]:
        with translated():
            records = await self._pool.fetch(
                "SELECT * FROM device_messages WHERE device_id = $1 AND direction = $2 "
                "ORDER BY created_at DESC, id DESC LIMIT $3", device_id, direction.value, limit)
        return [_message(r) for r in records]

    async def remember_services(self, device_id: str, pairs: Sequence[tuple[str, str]]) -> None:
        with translated():
            await self._pool.execute(
                """INSERT INTO device_property_services (device_id, key, service_id)
                   SELECT $1, k, s FROM unnest($2::text[], $3::text[]) AS u(k, s)
                   WHERE EXISTS (SELECT FROM devices WHERE id = $1)
                   ON CONFLICT (device_id, key) DO UPDATE SET service_id = EXCLUDED.service_id""",
                device_id, [k for k, _ in pairs], [s for _, s in pairs])

    async def property_services(self, device_id: str) -> dict[str, str]:
        with translated():
            records = await self._pool.fetch(
                "SELECT key, service_id FROM device_property_services WHERE device_id = $1", device_id)
        return {r["key"]: r["service_id"] for r in records}

    async def desired(self, device_id: str) -> list[DesiredService]:
        with translated():
            records = await self._pool.fetch(
                "SELECT * FROM device_shadow_desired WHERE device_id = $1 ORDER BY service_id", device_id)
        return [DesiredService(r["service_id"], r["properties"], r["event_time"], r["version"])
                for r in records]

    async def set_desired(self, device_id: str, service_id: str, properties: dict[str, Any], event_time: int,
                          version: int | None) -> DesiredService:
        with translated():
            r = await self._pool.fetchrow(_SET_DESIRED, device_id, service_id, _json(properties), event_time, version)
        if r is None:
            raise Conflict(f"The shadow of service {service_id} is not at version {version}")
        return DesiredService(service_id, r["properties"], r["event_time"], r["version"])
