"""Device CA certificates."""

from __future__ import annotations

import asyncpg

from fleetgate.core.certificate_model import DeviceCa
from fleetgate.core.errors import CaQuotaExceeded, CaTaken, NotFound
from fleetgate.core.model import Page
from fleetgate.storage.errors import translated
from fleetgate.storage.pages import fetch_page


def ca_of(r: asyncpg.Record) -> DeviceCa:
    return DeviceCa(
        id=r["id"], project_id=r["project_id"], pem=r["pem"], fingerprint=r["fingerprint"],
        subject=bytes(r["subject"]), cn_name=r["cn_name"], owner=r["owner"], verified=r["verified"],
        verify_code=r["verify_code"], provision_enable=r["provision_enable"], template_id=r["template_id"],
        not_before=r["not_before"], not_after=r["not_after"], created_at=r["created_at"], crl_pem=r["crl_pem"],
        product_id=r["product_id"], cn_pattern=r["cn_pattern"], allow_create=r["allow_create"],
    )


class DeviceCaStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_ca(self, ca: DeviceCa, max_per_project: int) -> None:
        with translated(CaTaken):
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT FROM projects WHERE id = $1 FOR UPDATE", ca.project_id)
                count = await conn.fetchval("SELECT count(*) FROM device_cas WHERE project_id = $1", ca.project_id)
                if count >= max_per_project:
                    raise CaQuotaExceeded(f"A project can have at most {max_per_project} device CA certificates")
                await conn.execute(
                    """INSERT INTO device_cas (id, project_id, pem, fingerprint, subject, cn_name, owner, verified,
                           verify_code, provision_enable, template_id, crl_pem, product_id, cn_pattern, allow_create,
                           not_before, not_after, created_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)""",
                    ca.id, ca.project_id, ca.pem, ca.fingerprint, ca.subject, ca.cn_name, ca.owner, ca.verified,
                    ca.verify_code, ca.provision_enable, ca.template_id, ca.crl_pem, ca.product_id, ca.cn_pattern,
                    ca.allow_create, ca.not_before, ca.not_after, ca.created_at)

    async def ca(self, project_id: str, ca_id: str) -> DeviceCa | None:
        with translated():
            r = await self._pool.fetchrow(
                "SELECT * FROM device_cas WHERE project_id = $1 AND id = $2 AND product_id IS NULL", project_id, ca_id)
        return ca_of(r) if r else None

    async def list_cas(self, project_id: str, limit: int, marker: str, offset: int) -> Page:
        with translated():
            return await fetch_page(self._pool, "device_cas", "project_id = $1 AND product_id IS NULL", [project_id],
                                    limit, marker, offset, ca_of)

    async def update_ca(self, ca: DeviceCa) -> None:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                if ca.template_id is not None and not await conn.fetchval(
                    "SELECT EXISTS (SELECT FROM provisioning_templates WHERE id = $1 AND project_id = $2)",
                    ca.template_id, ca.project_id,
                ):
                    raise NotFound(f"The provisioning template {ca.template_id} does not exist")
                await conn.execute(
                    """UPDATE device_cas SET verified = $3, provision_enable = $4, template_id = $5, crl_pem = $6,
                       cn_pattern = $7, allow_create = $8 WHERE project_id = $1 AND id = $2""",
                    ca.project_id, ca.id, ca.verified, ca.provision_enable, ca.template_id, ca.crl_pem,
                    ca.cn_pattern, ca.allow_create)

    async def set_product_ca(self, ca: DeviceCa) -> None:
        with translated(CaTaken):
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT EXISTS (SELECT FROM products WHERE project_id = $1 AND id = $2)",
                                           ca.project_id, ca.product_id):
                    raise NotFound(f"Product {ca.product_id} does not exist")
                await conn.execute("DELETE FROM device_cas WHERE product_id = $1", ca.product_id)
                await conn.execute(
                    """INSERT INTO device_cas (id, project_id, pem, fingerprint, subject, cn_name, owner, verified,
                           verify_code, provision_enable, product_id, cn_pattern, allow_create, not_before, not_after,
                           created_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, true, '', true, $8, $9, $10, $11, $12, $13)""",
                    ca.id, ca.project_id, ca.pem, ca.fingerprint, ca.subject, ca.cn_name, ca.owner, ca.product_id,
                    ca.cn_pattern, ca.allow_create, ca.not_before, ca.not_after, ca.created_at)

    async def delete_product_ca(self, project_id: str, product_id: str) -> bool:
        with translated():
            status = await self._pool.execute("DELETE FROM device_cas WHERE project_id = $1 AND product_id = $2",
                                              project_id, product_id)
        return not status.endswith(" 0")

    async def delete_ca(self, project_id: str, ca_id: str) -> bool:
        with translated():
            status = await self._pool.execute(
                "DELETE FROM device_cas WHERE project_id = $1 AND id = $2 AND product_id IS NULL", project_id, ca_id)
        return status.endswith(" 1")


async def trusted_ca_pems(conn: asyncpg.Pool | asyncpg.Connection) -> list[str]:
    """The verified device CAs: the TLS listeners' trust anchors besides device certificates."""
    return [r["pem"] for r in await conn.fetch("SELECT pem FROM device_cas WHERE verified")]
