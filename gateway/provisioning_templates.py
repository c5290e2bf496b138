"""Provisioning templates: IoTDA's create, list, show, update and delete, with its validation."""

from __future__ import annotations

import dataclasses
from typing import Any

from fleetgate.core import templates
from fleetgate.core.certificate_model import Template
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import InvalidInput, NotFound
from fleetgate.core.ids import new_id
from fleetgate.core.model import Page
from fleetgate.core.ports import TemplateStore


class TemplateService:
    def __init__(self, store: TemplateStore, max_per_project: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._max = max_per_project
        self._clock = clock

    async def create(self, project_id: str, body: dict[str, Any]) -> Template:
        name = templates.check_name(body.get("template_name"))
        description = templates.check_description(body.get("description"))
        template_body = body.get("template_body")
        if template_body is None:
            raise InvalidInput("template_body is required")
        templates.compile_body(template_body)
        now = self._clock.now_ms()
        template = Template(new_id(), project_id, name, description, template_body, now, now,
                            allow_rotation=_flag(body.get("allow_certificate_rotation")))
        await self._store.create_template(template, self._max)
        return template

    async def get(self, project_id: str, template_id: str) -> Template:
        template = await self._store.template(project_id, template_id)
        if template is None:
            raise NotFound(f"The provisioning template {template_id} does not exist")
        return template

    async def list(self, project_id: str, limit: int, marker: str, offset: int, name: str | None) -> Page:
        return await self._store.list_templates(project_id, limit, marker, offset, name or None)

    async def update(self, project_id: str, template_id: str, body: dict[str, Any]) -> Template:
        """Only description and template_body change (and this gateway's rotation switch)."""
        unknown = set(k for k, v in body.items() if v is not None) - {
            "description", "template_body", "allow_certificate_rotation"}
        if unknown:
            raise InvalidInput(f"Only description and template_body can be updated, not {', '.join(sorted(unknown))}")
        current = await self.get(project_id, template_id)
        changes: dict[str, Any] = {"updated_at": self._clock.now_ms()}
        if body.get("description") is not None:
            changes["description"] = templates.check_description(body["description"])
        if body.get("template_body") is not None:
            templates.compile_body(body["template_body"])
            changes["body"] = body["template_body"]
        if body.get("allow_certificate_rotation") is not None:
            changes["allow_rotation"] = _flag(body["allow_certificate_rotation"])
        updated = dataclasses.replace(current, **changes)
        if not await self._store.update_template(updated):
            raise NotFound(f"The provisioning template {template_id} does not exist")
        return updated

    async def delete(self, project_id: str, template_id: str) -> None:
        """TemplateInUse while a device CA is bound to it."""
        if not await self._store.delete_template(project_id, template_id):
            raise NotFound(f"The provisioning template {template_id} does not exist")


def _flag(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput("allow_certificate_rotation must be true or false")
    return value
