"""Projects and management tokens."""

from __future__ import annotations

import asyncpg

from fleetgate.core.errors import ProjectNameTaken
from fleetgate.core.model import Project
from fleetgate.storage.errors import translated
from fleetgate.storage.rows import SECRET_KEY
from fleetgate.storage.sealing import Sealer


class ProjectStore:
    def __init__(self, pool: asyncpg.Pool, sealer: Sealer) -> None:
        self._pool = pool
        self._sealer = sealer

    async def create_project(self, project: Project) -> None:
        with translated(ProjectNameTaken):
            await self._pool.execute(
                "INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3)",
                project.id, project.name, project.created_at,
            )

    async def project(self, project_id: str) -> Project | None:
        with translated():
            r = await self._pool.fetchrow("SELECT * FROM projects WHERE id = $1", project_id)
        return Project(r["id"], r["name"], r["created_at"]) if r else None

    async def add_token(self, project_id: str, token_hash: str, description: str, created_at: int) -> None:
        with translated():
            await self._pool.execute(
                "INSERT INTO management_tokens (token_hash, project_id, description, created_at) VALUES ($1, $2, $3, $4)",
                token_hash, project_id, description, created_at,
            )

    async def project_of_token(self, token_hash: str) -> str | None:
        with translated():
            return await self._pool.fetchval(
                "SELECT project_id FROM management_tokens WHERE token_hash = $1", token_hash
            )

    async def add_access_key(self, access_key: str, project_id: str, secret_key: str, created_at: int) -> None:
        with translated():
            await self._pool.execute(
                "INSERT INTO access_keys (access_key, project_id, secret_key, created_at) VALUES ($1, $2, $3, $4)",
                access_key, project_id, self._sealer.seal(secret_key, SECRET_KEY), created_at,
            )

    async def access_key(self, access_key: str) -> tuple[str, str] | None:
        with translated():
            r = await self._pool.fetchrow("SELECT project_id, secret_key FROM access_keys WHERE access_key = $1",
                                          access_key)
        return (r["project_id"], self._sealer.open(r["secret_key"], SECRET_KEY) or "") if r else None
