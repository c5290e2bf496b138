"""Provisioning templates."""

from __future__ import annotations

import asyncpg

from fleetgate.core.certificate_model import Template
from fleetgate.core.errors import TemplateInUse, TemplateNameTaken, TemplateQuotaExceeded
from fleetgate.core.model import Page
from fleetgate.storage.errors import translated
from fleetgate.storage.pages import fetch_page


def template_of(r: asyncpg.Record) -> Template:
    return Template(r["id"], r["project_id"], r["name"], r["description"], r["body"], r["created_at"],
                    r["updated_at"], r["allow_rotation"])


class TemplateStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create_template(self, template: Template, max_per_project: int) -> None:
        with translated(TemplateNameTaken):
            async with self._pool.acquire() as conn, conn.transaction():
                # The project row is the lock that makes count-then-insert safe.
                await conn.execute("SELECT FROM projects WHERE id = $1 FOR UPDATE", template.project_id)
                count = await conn.fetchval(
                    "SELECT count(*) FROM provisioning_templates WHERE project_id = $1", template.project_id)
                if count >= max_per_project:
                    raise TemplateQuotaExceeded(
                        f"A project can have at most {max_per_project} provisioning templates")
                await conn.execute(
                    """INSERT INTO provisioning_templates
                       (id, project_id, name, description, body, allow_rotation, created_at, updated_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                    template.id, template.project_id, template.name, template.description, template.body,
                    template.allow_rotation, template.created_at, template.updated_at)

    async def template(self, project_id: str, template_id: str) -> Template | None:
        with translated():
            r = await self._pool.fetchrow(
                "SELECT * FROM provisioning_templates WHERE project_id = $1 AND id = $2", project_id, template_id)
        return template_of(r) if r else None

    async def list_templates(self, project_id: str, limit: int, marker: str, offset: int, name: str | None) -> Page:
        where, args = "project_id = $1", [project_id]
        if name is not None:
            where, args = where + " AND name = $2", [project_id, name]
        with translated():
            return await fetch_page(self._pool, "provisioning_templates", where, args, limit, marker, offset,
                                    template_of)

    async def update_template(self, template: Template) -> bool:
        with translated():
            status = await self._pool.execute(
                """UPDATE provisioning_templates SET description = $3, body = $4, allow_rotation = $5,
                   updated_at = $6 WHERE project_id = $1 AND id = $2""",
                template.project_id, template.id, template.description, template.body, template.allow_rotation,
                template.updated_at)
        return status.endswith(" 1")

    async def delete_template(self, project_id: str, template_id: str) -> bool:
        with translated():
            try:
                status = await self._pool.execute(
                    "DELETE FROM provisioning_templates WHERE project_id = $1 AND id = $2", project_id, template_id)
            except (asyncpg.ForeignKeyViolationError, asyncpg.RestrictViolationError):
                raise TemplateInUse() from None
        return status.endswith(" 1")
