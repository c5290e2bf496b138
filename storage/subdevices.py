"""Sub-devices behind gateway devices: found or created by name in the gateway's project."""

from __future__ import annotations

import asyncpg

from fleetgate.core.errors import QuotaExceeded
from fleetgate.core.ids import new_id
from fleetgate.core.model import DeviceIdentity
from fleetgate.storage.errors import translated

_FIND = """SELECT d.id, d.project_id, d.product_id, d.name, d.gateway, d.gateway_id, p.send_ack_on_validation_error
           FROM devices d JOIN products p ON p.id = d.product_id
           WHERE d.project_id = $1 AND d.name = $2"""


class SubDeviceStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def subdevice(
        self, gateway: DeviceIdentity, name: str, product_name: str, max_per_gateway: int, now_ms: int
    ) -> DeviceIdentity:
        """The device named ``name`` in the gateway's project, its gateway now this one (ThingsBoard:
        the last gateway to connect a device is its gateway); created, with the product named
        ``product_name`` (created with provisioning disabled when missing), when there is none.
        QuotaExceeded when the gateway already has ``max_per_gateway`` sub-devices."""
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                found = await conn.fetchrow(_FIND, gateway.project_id, name)
                if found is None:
                    count = await conn.fetchval("SELECT count(*) FROM devices WHERE gateway_id = $1",
                                                gateway.device_id)
                    if count >= max_per_gateway:
                        raise QuotaExceeded(f"The gateway already has {max_per_gateway} sub-devices")
                    await conn.execute(
                        """INSERT INTO products (id, project_id, name, provision_strategy, created_at)
                           VALUES ($1, $2, $3, 'DISABLED', $4) ON CONFLICT (project_id, name) DO NOTHING""",
                        new_id(), gateway.project_id, product_name, now_ms,
                    )
                    await conn.execute(
                        """INSERT INTO devices (id, project_id, product_id, name, gateway_id, created_at)
                           SELECT $1, $2, p.id, $3, $4, $5 FROM products p WHERE p.project_id = $2 AND p.name = $6
                           ON CONFLICT (project_id, name) DO UPDATE SET gateway_id = EXCLUDED.gateway_id""",
                        new_id(), gateway.project_id, name, gateway.device_id, now_ms, product_name,
                    )
                    found = await conn.fetchrow(_FIND, gateway.project_id, name)
                elif found["gateway_id"] != gateway.device_id and found["id"] != gateway.device_id:
                    await conn.execute("UPDATE devices SET gateway_id = $1 WHERE id = $2",
                                       gateway.device_id, found["id"])
        return DeviceIdentity(found["id"], found["project_id"], found["product_id"], found["name"],
                              found["send_ack_on_validation_error"], found["gateway"])
