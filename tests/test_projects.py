"""Management tokens and AK/SK secrets as the project service issues them."""

from __future__ import annotations

from fleetgate.core.model import Project
from fleetgate.core.projects import ProjectService, token_hash


class MemoryProjects:
    """The ProjectStore port in memory."""

    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.tokens: dict[str, str] = {}
        self.keys: dict[str, tuple[str, str]] = {}

    async def create_project(self, project: Project) -> None:
        self.projects[project.id] = project

    async def project(self, project_id: str) -> Project | None:
        return self.projects.get(project_id)

    async def add_token(self, project_id: str, token_hash: str, description: str, created_at: int) -> None:
        self.tokens[token_hash] = project_id

    async def project_of_token(self, token_hash: str) -> str | None:
        return self.tokens.get(token_hash)

    async def add_access_key(self, access_key: str, project_id: str, secret_key: str, created_at: int) -> None:
        self.keys[access_key] = (project_id, secret_key)

    async def access_key(self, access_key: str) -> tuple[str, str] | None:
        return self.keys.get(access_key)


async def test_tokens_and_secrets_are_letters_and_digits_so_a_command_line_takes_them() -> None:
    # A token beginning with '-' once failed `iot-gateway simulate --project-token TOKEN`.
    store = MemoryProjects()
    projects = ProjectService(store)
    project = await projects.create_project("p")
    for _ in range(200):
        token = await projects.create_token(project.id)
        _, secret = await projects.create_access_key(project.id)
        assert token.isalnum() and len(token) >= 43
        assert secret.isalnum() and len(secret) >= 40
        assert await projects.project_of(token) == project.id
    assert all(stored != token for stored in store.tokens) and token_hash(token) in store.tokens
