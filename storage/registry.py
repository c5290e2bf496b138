"""The device registry behind the management API: devices with what an operator may see of them."""

from __future__ import annotations

import dataclasses

import asyncpg

from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import NameTaken
from fleetgate.core.model import (
    CredentialsInfo,
    CredentialsType,
    Device,
    DeviceDetails,
    Page,
    StoredCredentials,
)
from fleetgate.core.presence_model import Connectivity, DeviceStatus
from fleetgate.storage import rows
from fleetgate.storage.devices import DeviceStore, update_credentials
from fleetgate.storage.errors import translated
from fleetgate.storage.pages import fetch_page
from fleetgate.storage.sealing import Sealer


def _details_at(now: str) -> str:
    """A device with its credentials' non-secret fields, whether it has provisioned
    (devices.mark_provisioned sets the provisionState server attribute), and its status at
    ``now`` (fleetgate.core.presence): ONLINE while a live process holds a connection of it or
    its last request's lease runs. An expired lease, or a dead process's, is a time it went
    offline that nothing has written yet."""
    return f"""(SELECT d.*, c.type AS credentials_type, c.client_id, c.user_name, c.secure_access,
                       (SELECT r.node_id FROM device_registrations r WHERE r.device_id = d.id) AS registered_node_id,
                       (SELECT b.fingerprint FROM device_certificates b WHERE b.device_id = d.id
                        ORDER BY b.enabled DESC, b.created_at DESC LIMIT 1) AS fingerprint,
                       EXISTS (SELECT 1 FROM attribute_kv a WHERE a.device_id = d.id AND a.scope = 'SERVER_SCOPE'
                               AND a.key = 'provisionState')
                       OR EXISTS (SELECT 1 FROM device_registrations r WHERE r.device_id = d.id) AS provisioned,
                       CASE WHEN coalesce(d.online_until > {now}, false) OR held.live IS NOT NULL
                            THEN 'ONLINE' ELSE 'OFFLINE' END AS status,
                       GREATEST(d.last_offline_time, CASE WHEN d.online_until <= {now} THEN d.online_until END,
                                held.dead) AS offline_time
                FROM devices d LEFT JOIN device_credentials c ON c.device_id = d.id
                LEFT JOIN LATERAL (
                    SELECT max(p.lease_until) FILTER (WHERE p.lease_until > {now}) AS live,
                           max(p.lease_until) FILTER (WHERE p.lease_until <= {now}) AS dead
                    FROM device_connections s JOIN gateway_processes p ON p.id = s.process_id
                    WHERE s.device_id = d.id) held ON true) AS details"""

# The data tables have no foreign keys (ingest must commit for a device deleted meanwhile),
# so a device's rows are deleted with it. ts_kv's are looked for with the device's project
# number: only that project's partitions are searched (ts_kv is partitioned by project).
_DELETE_ATTRIBUTES = "DELETE FROM attribute_kv WHERE device_id = $1"
_DELETE_TELEMETRY = "DELETE FROM ts_kv WHERE project_no = $2 AND device_id = $1"
_DELETE_CONNECTIONS = "DELETE FROM device_connections WHERE device_id = $1"


def _details(r: asyncpg.Record) -> DeviceDetails:
    kind, fingerprint = r["credentials_type"], r["fingerprint"]
    if kind:
        info: CredentialsInfo | None = CredentialsInfo(
            CredentialsType(kind), r["client_id"], r["user_name"],
            secure_access=r["secure_access"] if kind == CredentialsType.SECRET else None)
    else:  # a device a certificate registered (IoTDA's templates), or bound to a fingerprint
        info = CredentialsInfo(CredentialsType.X509_CERTIFICATE, fingerprint=fingerprint) if fingerprint else None
    connectivity = Connectivity(DeviceStatus(r["status"]), r["last_online_time"], r["offline_time"],
                                r["last_activity_time"])
    device = rows.device(r)
    if device.node_id is None and r["registered_node_id"] is not None:  # a template rendered it
        device = dataclasses.replace(device, node_id=r["registered_node_id"])
    return DeviceDetails(device, info, r["provisioned"], connectivity)


class DeviceRegistryStore(DeviceStore):
    """The device store as operators see it: devices are created as provisioning creates
    them (``create_device``), then listed, changed and deleted. Connectivity is as of the
    clock's now."""

    def __init__(self, pool: asyncpg.Pool, sealer: Sealer, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(pool, sealer)
        self._clock = clock

    async def device(self, project_id: str, device_id: str) -> DeviceDetails | None:
        with translated():
            record = await self._pool.fetchrow(
                f"SELECT * FROM {_details_at('$3')} WHERE project_id = $1 AND id = $2",
                project_id, device_id, self._clock.now_ms(),
            )
        return _details(record) if record else None

    async def list_devices(
        self, project_id: str, limit: int, marker: str, offset: int, *, product_id: str | None, name: str | None,
        status: DeviceStatus | None = None, gateway_id: str | None = None, customer: str | None = None,
    ) -> Page:
        conditions, args = ["project_id = $1"], [project_id, self._clock.now_ms()]
        for column, value in (("product_id", product_id), ("name", name),
                              ("status", status.value if status else None), ("gateway_id", gateway_id),
                              ("customer", customer)):
            if value is not None:
                args.append(value)
                conditions.append(f"{column} = ${len(args)}")
        with translated():
            return await fetch_page(
                self._pool, _details_at("$2"), " AND ".join(conditions), args, limit, marker, offset, _details
            )

    async def update_device(self, device: Device, credentials: StoredCredentials | None) -> bool:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                try:
                    status = await conn.execute(
                        "UPDATE devices SET name = $3, label = $4, gateway = $5 WHERE project_id = $1 AND id = $2",
                        device.project_id, device.id, device.name, device.label, device.gateway,
                    )
                except asyncpg.UniqueViolationError:
                    raise NameTaken() from None
                if status != "UPDATE 1":
                    return False
                if credentials is not None:
                    await update_credentials(conn, device.id, credentials, self._sealer)
        return True

    async def delete_device(self, project_id: str, device_id: str) -> bool:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                # device_credentials goes with the device (ON DELETE CASCADE).
                project_no = await conn.fetchval(
                    "DELETE FROM devices d USING projects p WHERE d.project_id = $1 AND d.id = $2 AND p.id = d.project_id "
                    "RETURNING p.no", project_id, device_id)
                if project_no is None:
                    return False
                await conn.execute(_DELETE_ATTRIBUTES, device_id)
                await conn.execute(_DELETE_CONNECTIONS, device_id)
                await conn.execute(_DELETE_TELEMETRY, device_id, project_no)
        return True
