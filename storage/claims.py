"""ThingsBoard's device claiming: the ``claimingData`` server attribute and the device's customer.

``claimingData`` is kept in ThingsBoard's shape, ``{"secretKey": ..., "expirationTime": ...}``,
its ``secretKey`` the secret's hash (fleetgate.core.credentials), never the secret.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from fleetgate.core.claiming import CLAIMING_DATA
from fleetgate.core.provisioning_model import ClaimingData, ClaimTarget
from fleetgate.storage.errors import translated

_TARGET = """SELECT d.id, d.project_id, d.name, d.customer, p.allow_claiming, a.json_v AS claim
             FROM devices d JOIN products p ON p.id = d.product_id
             LEFT JOIN attribute_kv a ON a.device_id = d.id AND a.scope = 'SERVER_SCOPE' AND a.key = $3
             WHERE d.project_id = $1 AND {column} = $2"""
_BY_ID = _TARGET.format(column="d.id")
_BY_NAME = _TARGET.format(column="d.name")
_DELETE_CLAIM = "DELETE FROM attribute_kv WHERE device_id = $1 AND scope = 'SERVER_SCOPE' AND key = $2"


def _claim(data: dict[str, Any] | None) -> ClaimingData | None:
    if not isinstance(data, dict):
        return None
    return ClaimingData(data["secretKey"], data["expirationTime"])


class ClaimStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def claim_target(self, project_id: str, *, device_id: str | None = None,
                           name: str | None = None) -> ClaimTarget | None:
        query, key = (_BY_ID, device_id) if device_id is not None else (_BY_NAME, name)
        with translated():
            r = await self._pool.fetchrow(query, project_id, key, CLAIMING_DATA)
        if r is None:
            return None
        return ClaimTarget(r["id"], r["project_id"], r["name"], r["customer"], r["allow_claiming"], _claim(r["claim"]))

    async def save_claim(self, device_id: str, claim: ClaimingData, ts: int) -> bool:
        value = orjson.dumps({"secretKey": claim.secret_hash, "expirationTime": claim.expiration_time}).decode()
        with translated():
            status = await self._pool.execute(
                """INSERT INTO attribute_kv (device_id, scope, key, last_update_ts, json_v)
                   SELECT id, 'SERVER_SCOPE', $2, $3, $4::text::jsonb FROM devices WHERE id = $1 AND customer IS NULL
                   ON CONFLICT (device_id, scope, key) DO UPDATE SET
                       last_update_ts = EXCLUDED.last_update_ts, bool_v = NULL, long_v = NULL, dbl_v = NULL,
                       str_v = NULL, json_v = EXCLUDED.json_v""",
                device_id, CLAIMING_DATA, ts, value,
            )
        return status.endswith(" 1")

    async def assign_customer(self, device_id: str, customer: str) -> bool:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    "UPDATE devices SET customer = $2 WHERE id = $1 AND customer IS NULL", device_id, customer)
                if status != "UPDATE 1":
                    return False
                await conn.execute(_DELETE_CLAIM, device_id, CLAIMING_DATA)
        return True

    async def release(self, project_id: str, device_id: str) -> bool:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                status = await conn.execute(
                    "UPDATE devices SET customer = NULL WHERE project_id = $1 AND id = $2", project_id, device_id)
                if status != "UPDATE 1":
                    return False
                await conn.execute(_DELETE_CLAIM, device_id, CLAIMING_DATA)
        return True
