"""Projects (tenants) and the management tokens that scope every management call to one."""

from __future__ import annotations

import hashlib
import re
import secrets

from fleetgate.core import signing
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import InvalidInput, NotFound, Unauthorized
from fleetgate.core.ids import new_id, random_alphanumeric
from fleetgate.core.model import Project
from fleetgate.core.ports import ProjectStore

_NAME = re.compile(r"[\w.\-]{1,64}")
_AK_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ProjectService:
    def __init__(self, store: ProjectStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock

    async def create_project(self, name: str) -> Project:
        if not _NAME.fullmatch(name):
            raise InvalidInput("A project name is 1 to 64 letters, digits, '_', '-' or '.'")
        project = Project(new_id(), name, self._clock.now_ms())
        await self._store.create_project(project)
        return project

    async def create_token(self, project_id: str, description: str = "") -> str:
        """A new management token for the project, returned once in clear and stored hashed."""
        if await self._store.project(project_id) is None:
            raise NotFound(f"Project {project_id} does not exist")
        # Letters and digits only: a token is often a command-line argument, and one that
        # began with '-' would be read as an option.
        token = random_alphanumeric(43)
        await self._store.add_token(project_id, token_hash(token), description, self._clock.now_ms())
        return token

    async def create_access_key(self, project_id: str) -> tuple[str, str]:
        """A new access key id and secret key for SDK-HMAC-SHA256 signed calls to the project.

        The secret is kept in clear: verifying an HMAC needs it (as every AK/SK service does)."""
        if await self._store.project(project_id) is None:
            raise NotFound(f"Project {project_id} does not exist")
        access_key = "".join(secrets.choice(_AK_ALPHABET) for _ in range(20))
        secret_key = random_alphanumeric(40)
        await self._store.add_access_key(access_key, project_id, secret_key, self._clock.now_ms())
        return access_key, secret_key

    async def project_of_signature(self, authorization: str, request: signing.SignedRequest) -> str:
        """The project of a request signed with an access key; Unauthorized otherwise."""
        signature = signing.parse(authorization)
        found = await self._store.access_key(signature.access_key)
        if found is None:
            raise Unauthorized("The access key is invalid")
        project_id, secret_key = found
        signing.verify(request, signature, secret_key)
        return project_id

    async def project_of(self, token: str | None) -> str:
        if not token:
            raise Unauthorized("The X-Auth-Token header is missing")
        project_id = await self._store.project_of_token(token_hash(token))
        if project_id is None:
            raise Unauthorized("The token is invalid")
        return project_id
