"""The certificate auto-registration port: fingerprints, CAs by subject, the one transaction."""

from __future__ import annotations

import asyncpg

from fleetgate.core.certificate_model import BoundCertificate, DeviceCa, Registration, Template
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import Conflict
from fleetgate.core.model import AuditRecord, DeviceIdentity
from fleetgate.storage.audit import AUDIT_COLUMNS, audit_values
from fleetgate.storage.device_cas import ca_of
from fleetgate.storage.errors import translated
from fleetgate.storage.templates import template_of

_BOUND = """SELECT c.fingerprint, c.enabled, c.template_id, c.ca_id, a.crl_pem,
                   d.id, d.project_id, d.product_id, d.name, p.send_ack_on_validation_error
            FROM device_certificates c JOIN devices d ON d.id = c.device_id
            JOIN products p ON p.id = d.product_id LEFT JOIN device_cas a ON a.id = c.ca_id
            WHERE c.fingerprint = $1"""


# $1-$5 the device, $6-$11 its registration, $12-$14 the certificate binding, $15-$21 the audit
# record (at $11). Data-modifying CTEs all run, in one snapshot: the rotation's UPDATE does not
# see the certificate inserted beside it.
_REST = """
    registration AS (
        INSERT INTO device_registrations
            (device_id, project_id, product_id, node_id, template_id, ca_id, tags, policy_ids, created_at)
        VALUES ($1, $2, $3, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (device_id) DO UPDATE SET ca_id = EXCLUDED.ca_id),
    binding AS (
        INSERT INTO device_certificates
            (fingerprint, device_id, project_id, ca_id, template_id, common_name, not_after, created_at)
        VALUES ($12, $1, $2, $8, $7, $13, $14, $11))
    INSERT INTO """ + AUDIT_COLUMNS + " VALUES ($11, $15, $16, $17, $18, $19, $20, $21)"
_CREATE = """
    WITH device AS (
        INSERT INTO devices (id, project_id, product_id, name, label, gateway, created_at)
        VALUES ($1, $2, $3, $4, NULL, false, $5)),""" + _REST
# The certificates it replaces stay bound, disabled: presented again, they are refused.
# The device exists: its name and creation time ($4, $5) are only typed, never used.
_ROTATE = """
    WITH unused AS (SELECT $4::text, $5::bigint),
    disabled AS (UPDATE device_certificates SET enabled = false WHERE device_id = $1),""" + _REST


class RegistrationStore:
    def __init__(self, pool: asyncpg.Pool, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._pool = pool
        self._clock = clock

    async def certificate(self, fingerprint: str) -> BoundCertificate | None:
        with translated():
            r = await self._pool.fetchrow(_BOUND, fingerprint)
        if r is None:
            return None
        identity = DeviceIdentity(r["id"], r["project_id"], r["product_id"], r["name"],
                                  r["send_ack_on_validation_error"])
        return BoundCertificate(r["fingerprint"], identity, r["enabled"], r["template_id"], r["ca_id"], r["crl_pem"])

    async def cas_with_subject(self, subject: bytes) -> list[DeviceCa]:
        with translated():
            return [ca_of(r) for r in await self._pool.fetch("SELECT * FROM device_cas WHERE subject = $1", subject)]

    async def template_by_id(self, template_id: str) -> Template | None:
        with translated():
            r = await self._pool.fetchrow("SELECT * FROM provisioning_templates WHERE id = $1", template_id)
        return template_of(r) if r else None

    async def existing_device(self, project_id: str, device_id: str, product_id: str, node_id: str,
                              name: str) -> tuple[str, str | None, str] | None:
        with translated():
            r = await self._pool.fetchrow(
                # Three indexed lookups rather than one OR across the join.
                """SELECT d.id, r.template_id, d.product_id FROM devices d
                   LEFT JOIN device_registrations r ON r.device_id = d.id WHERE d.id = $1
                   UNION ALL
                   SELECT d.id, r.template_id, d.product_id FROM devices d
                   LEFT JOIN device_registrations r ON r.device_id = d.id WHERE d.project_id = $2 AND d.name = $5
                   UNION ALL
                   SELECT r.device_id, r.template_id, r.product_id FROM device_registrations r
                   WHERE r.project_id = $2 AND r.product_id = $3 AND r.node_id = $4
                   LIMIT 1""",
                device_id, project_id, product_id, node_id, name)
        return (r["id"], r["template_id"], r["product_id"]) if r else None

    async def product_exists(self, project_id: str, product_id: str) -> bool:
        with translated():
            return await self._pool.fetchval(
                "SELECT EXISTS (SELECT FROM products WHERE project_id = $1 AND id = $2)", project_id, product_id)

    async def audit(self, record: AuditRecord) -> None:
        with translated():
            await self._pool.execute(f"INSERT INTO {AUDIT_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                     *audit_values(record, self._clock.now_ms()))

    async def register(self, registration: Registration, record: AuditRecord) -> None:
        """One statement, so one round trip and its own transaction: a registration is four
        rows (or, rotating, the old certificates disabled and three), all or none."""
        d, now = registration.device, self._clock.now_ms()
        with translated(Conflict):
            await self._pool.execute(
                _ROTATE if registration.rotate else _CREATE,
                d.id, d.project_id, d.product_id, d.name, d.created_at, registration.node_id,
                registration.template_id, registration.ca_id, [list(t) for t in registration.tags],
                list(registration.policy_ids), now, registration.fingerprint, registration.common_name,
                registration.not_after, *audit_values(record, now)[1:])
