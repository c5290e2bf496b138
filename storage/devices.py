"""Devices and their credentials: the provisioning and authentication ports."""

from __future__ import annotations

import asyncpg

from fleetgate.core.errors import Conflict, CredentialsTaken, NameTaken, NodeIdTaken
from fleetgate.core.model import AuditRecord, Device, DeviceIdentity, Product, StoredCredentials
from fleetgate.storage import rows
from fleetgate.storage.audit import AUDIT_COLUMNS, audit_values
from fleetgate.storage.errors import translated
from fleetgate.storage.sealing import Sealer

# A new device in one statement: one round trip and one implicit transaction for the
# device and its credentials and, when it is created provisioned, its provisionState and
# the audit record (at the device's creation time, $7). The other rows take the id from
# the device's CTE, so the device row is inserted first and a taken name is reported
# before taken credentials.
_NEW_DEVICE = """
    WITH device AS (
        INSERT INTO devices (id, project_id, product_id, name, label, gateway, created_at, node_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $16) RETURNING id
    ), credentials AS (
        INSERT INTO device_credentials
            (device_id, type, lookup, password_hash, client_id, user_name, certificate, pending, secret, secure_access)
        SELECT id, $8, $9, $10, $11, $12, $13, $14, $15, $17 FROM device
    )"""
_CREATE_DEVICE = _NEW_DEVICE + " SELECT FROM device"
_CREATE_PROVISIONED = _NEW_DEVICE + f""", state AS (
        INSERT INTO attribute_kv (device_id, scope, key, last_update_ts, str_v)
        SELECT id, 'SERVER_SCOPE', 'provisionState', $7, 'provisioned' FROM device
    )
    INSERT INTO {AUDIT_COLUMNS} SELECT $7, $18, $19, $20, $21, $22, $23, $24 FROM device"""

# The first provisioning of an existing device. The attribute insert is the claim:
# of concurrent claims one inserts, the others wait for it and then insert nothing,
# so only the winner forgets the pending credentials and is audited here.
_MARK_PROVISIONED = f"""
    WITH state AS (
        INSERT INTO attribute_kv (device_id, scope, key, last_update_ts, str_v)
        VALUES ($1, 'SERVER_SCOPE', 'provisionState', $2, 'provisioned')
        ON CONFLICT DO NOTHING RETURNING device_id
    ), cleared AS (
        UPDATE device_credentials SET pending = NULL WHERE device_id IN (SELECT device_id FROM state)
    ), audited AS (
        INSERT INTO {AUDIT_COLUMNS} SELECT $2, $3, $4, $5, $6, $7, $8, $9 FROM state
    )
    SELECT EXISTS (SELECT FROM state)"""

# The unique constraints a new device can break, by the names PostgreSQL gave them.
_CLASHES: dict[str, type[Conflict]] = {
    "devices_project_id_name_key": NameTaken,
    "device_credentials_lookup_key": CredentialsTaken,
    "devices_product_node_idx": NodeIdTaken,
}


class DeviceStore:
    def __init__(self, pool: asyncpg.Pool, sealer: Sealer) -> None:
        self._pool = pool
        self._sealer = sealer

    async def product_by_provision_key(self, key: str) -> Product | None:
        with translated():
            record = await self._pool.fetchrow("SELECT * FROM products WHERE provision_key = $1", key)
        return rows.product(record, self._sealer) if record else None

    async def create_device(
        self, device: Device, credentials: StoredCredentials, provisioned: AuditRecord | None = None
    ) -> None:
        d, c = device, credentials
        values = (d.id, d.project_id, d.product_id, d.name, d.label, d.gateway, d.created_at,
                  c.type.value, c.lookup, c.password_hash, c.client_id, c.user_name, c.certificate,
                  rows.pending_to_json(c.pending, self._sealer), self._sealer.seal(c.secret, rows.SECRET),
                  d.node_id, c.secure_access)
        with translated():
            try:
                if provisioned is None:
                    await self._pool.execute(_CREATE_DEVICE, *values)
                else:
                    await self._pool.execute(_CREATE_PROVISIONED, *values,
                                             *audit_values(provisioned, d.created_at)[1:])
            except asyncpg.UniqueViolationError as exc:
                clash = _CLASHES.get(exc.constraint_name or "")
                if clash is None:
                    raise
                raise clash() from None

    async def device_with_credentials(
        self, project_id: str, name: str
    ) -> tuple[Device, StoredCredentials | None] | None:
        with translated():
            record = await self._pool.fetchrow(
                """SELECT d.*, c.type, c.lookup, c.password_hash, c.client_id, c.user_name, c.certificate, c.pending,
                          c.secret, c.secure_access
                   FROM devices d LEFT JOIN device_credentials c ON c.device_id = d.id
                   WHERE d.project_id = $1 AND d.name = $2""",
                project_id, name,
            )
        if record is None:
            return None
        return rows.device(record), (
            rows.stored_credentials(record, self._sealer) if record["type"] is not None else None
        )

    async def mark_provisioned(self, device_id: str, ts: int, record: AuditRecord) -> bool:
        with translated():
            return await self._pool.fetchval(_MARK_PROVISIONED, device_id, *audit_values(record, ts))

    async def authenticate(self, lookup: str) -> tuple[DeviceIdentity, StoredCredentials] | None:
        with translated():
            record = await self._pool.fetchrow(
                """SELECT d.id, d.project_id, d.product_id, d.name, d.gateway, p.send_ack_on_validation_error, c.*
                   FROM device_credentials c JOIN devices d ON d.id = c.device_id
                   JOIN products p ON p.id = d.product_id
                   WHERE c.lookup = $1""",
                lookup,
            )
        return (rows.identity(record), rows.stored_credentials(record, self._sealer)) if record else None


_UPSERT_CREDENTIALS = """INSERT INTO device_credentials
    (device_id, type, lookup, password_hash, client_id, user_name, certificate, pending, secret, secure_access)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (device_id) DO UPDATE SET type = EXCLUDED.type, lookup = EXCLUDED.lookup,
        password_hash = EXCLUDED.password_hash, client_id = EXCLUDED.client_id, user_name = EXCLUDED.user_name,
        certificate = EXCLUDED.certificate, pending = EXCLUDED.pending, secret = EXCLUDED.secret,
        secure_access = EXCLUDED.secure_access"""


async def update_credentials(
    conn: asyncpg.Connection, device_id: str, credentials: StoredCredentials, sealer: Sealer
) -> None:
    """Set a device's credentials in the caller's transaction, updating its row in place.

    In place because of a concurrent first provisioning:
    if it commits after this row changed, its ``pending = NULL`` waits for this
    transaction and then applies to the new row; if it committed before, the check
    below sees it. Either way a provisioned device keeps no clear credentials.
    """
    try:
        await conn.execute(
            _UPSERT_CREDENTIALS, device_id, credentials.type.value, credentials.lookup, credentials.password_hash,
            credentials.client_id, credentials.user_name, credentials.certificate,
            rows.pending_to_json(credentials.pending, sealer), sealer.seal(credentials.secret, rows.SECRET),
            credentials.secure_access,
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
