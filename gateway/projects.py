"""Projects (tenants) and the management tokens that scope every management call to one."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from gateway.errors import InvalidInput, NotFound, Unauthorized
from gateway.ids import new_id
from gateway.model import Project
from gateway.ports import ProjectStore

_NAME = re.compile(r"[\w.\-]{1,64}")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ProjectService:
    def __init__(self, store: ProjectStore) -> None:
        self._store = store

    async def create_project(self, name: str) -> Project:
        if not _NAME.fullmatch(name):
            raise InvalidInput("A project name is 1 to 64 letters, digits, '_', '-' or '.'")
        project = Project(new_id(), name, time.time_ns() // 1_000_000)
        await self._store.create_project(project)
        return project

    async def create_token(self, project_id: str, description: str = "") -> str:
        """A new management token for the project, returned once in clear and stored hashed."""
        if await self._store.project(project_id) is None:
            raise NotFound(f"Project {project_id} does not exist")
        token = secrets.token_urlsafe(32)
        await self._store.add_token(project_id, token_hash(token), description, time.time_ns() // 1_000_000)
        return token

    async def project_of(self, token: str | None) -> str:
        if not token:
            raise Unauthorized("The X-Auth-Token header is missing")
        project_id = await self._store.project_of_token(token_hash(token))
        if project_id is None:
            raise Unauthorized("The token is invalid")
        return project_id
