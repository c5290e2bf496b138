"""Devices and their credentials: the provisioning and authentication ports."""

from __future__ import annotations

import asyncpg

from gateway.errors import CredentialsTaken, NameTaken
from gateway.model import Device, DeviceIdentity, Product, StoredCredentials
from storage import rows
from storage.errors import translated

_INSERT_DEVICE = """INSERT INTO devices (id, project_id, product_id, name, label, gateway, created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)"""
_INSERT_CREDENTIALS = """INSERT INTO device_credentials
    (device_id, type, lookup, password_hash, client_id, user_name, certificate, pending)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"""


async def insert_device(conn: asyncpg.Connection, device: Device, credentials: StoredCredentials) -> None:
    """Insert a device and its credentials in the caller's transaction."""
    try:
        await conn.execute(
            _INSERT_DEVICE, device.id, device.project_id, device.product_id, device.name, device.label,
            device.gateway, device.created_at,
        )
    except asyncpg.UniqueViolationError:
        raise NameTaken() from None
    await replace_credentials(conn, device.id, credentials)


async def replace_credentials(conn: asyncpg.Connection, device_id: str, credentials: StoredCredentials) -> None:
    await conn.execute("DELETE FROM device_credentials WHERE device_id = $1", device_id)
    try:
        await conn.execute(
            _INSERT_CREDENTIALS, device_id, credentials.type.value, credentials.lookup, credentials.password_hash,
            credentials.client_id, credentials.user_name, credentials.certificate,
            rows.pending_to_json(credentials.pending),
        )
    except asyncpg.UniqueViolationError:
        raise CredentialsTaken() from None


class DeviceStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def product_by_provision_key(self, key: str) -> Product | None:
        with translated():
            record = await self._pool.fetchrow("SELECT * FROM products WHERE provision_key = $1", key)
        return rows.product(record) if record else None

    async def create_device(self, device: Device, credentials: StoredCredentials) -> Device:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                await insert_device(conn, device, credentials)
        return device

    async def device_by_name(self, project_id: str, name: str) -> Device | None:
        with translated():
            record = await self._pool.fetchrow(
                "SELECT * FROM devices WHERE project_id = $1 AND name = $2", project_id, name
            )
        return rows.device(record) if record else None

    async def credentials_of(self, device_id: str) -> StoredCredentials | None:
        with translated():
            record = await self._pool.fetchrow("SELECT * FROM device_credentials WHERE device_id = $1", device_id)
        return rows.stored_credentials(record) if record else None

    async def mark_provisioned(self, device_id: str, ts: int) -> bool:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                inserted = await conn.fetchval(
                    """INSERT INTO attribute_kv (device_id, scope, key, last_update_ts, str_v)
                       VALUES ($1, 'SERVER_SCOPE', 'provisionState', $2, 'provisioned')
                       ON CONFLICT DO NOTHING RETURNING 1""",
                    device_id, ts,
                )
                if inserted:
                    await conn.execute("UPDATE device_credentials SET pending = NULL WHERE device_id = $1", device_id)
        return bool(inserted)

    async def authenticate(self, lookup: str) -> tuple[DeviceIdentity, StoredCredentials] | None:
        with translated():
            record = await self._pool.fetchrow(
                """SELECT d.id, d.project_id, d.product_id, d.name, c.*
                   FROM device_credentials c JOIN devices d ON d.id = c.device_id
                   WHERE c.lookup = $1""",
                lookup,
            )
        return (rows.identity(record), rows.stored_credentials(record)) if record else None


_UPSERT_CREDENTIALS = _INSERT_CREDENTIALS + """
    ON CONFLICT (device_id) DO UPDATE SET type = EXCLUDED.type, lookup = EXCLUDED.lookup,
        password_hash = EXCLUDED.password_hash, client_id = EXCLUDED.client_id, user_name = EXCLUDED.user_name,
        certificate = EXCLUDED.certificate, pending = EXCLUDED.pending"""


async def update_credentials(conn: asyncpg.Connection, device_id: str, credentials: StoredCredentials) -> None:
    """Set a device's credentials in the caller's transaction, updating its row in place.

    In place, unlike replace_credentials, because of a concurrent first provisioning:
    if it commits after this row changed, its ``pending = NULL`` waits for this
    transaction and then applies to the new row; if it committed before, the check
    below sees it. Either way a provisioned device keeps no clear credentials.
    """
    try:
        await conn.execute(
            _UPSERT_CREDENTIALS, device_id, credentials.type.value, credentials.lookup, credentials.password_hash,
            credentials.client_id, credentials.user_name, credentials.certificate,
            rows.pending_to_json(credentials.pending),
        )
    except asyncpg.UniqueViolationError:
        raise CredentialsTaken() from None
    if credentials.pending is not None:
        await conn.execute(
            """UPDATE device_credentials SET pending = NULL
               WHERE device_id = $1 AND EXISTS (SELECT 1 FROM attribute_kv WHERE device_id = $1
                                                AND scope = 'SERVER_SCOPE' AND key = 'provisionState')""",
            device_id,
        )
