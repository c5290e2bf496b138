"""Managing forwarding rules and their actions (IoTDA's routing-rule API), checked when written.

A rule's ``where`` and ``select`` are parsed here, so one outside the supported subset is refused
with InvalidInput (400) at creation, never found out at delivery. ``on_change`` is told after
every change, for the forwarders (this process's and, through it, the others') to follow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from fleetgate.core import errors
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.forwarding_model import SUBJECTS, Action, Channel, OutboxStore, Rule, RuleStore
from fleetgate.core.forwarding_sql import parse_select, parse_where
from fleetgate.core.ids import new_id
from fleetgate.core.model import Page

_APP_TYPES = frozenset({"GLOBAL", "APP"})
_NAME_MAX = 256


class RuleService:
    def __init__(
        self, store: RuleStore, outbox: OutboxStore, channels: Mapping[str, Channel], *,
        on_change: Callable[[], Awaitable[None]] | None = None, clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._channels = channels
        self._on_change = on_change
        self._clock = clock

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._channels)

    async def create_rule(
        self, project_id: str, *, name: str | None, description: str | None, resource: str, event: str,
        app_type: str | None = None, app_id: str | None = None, select: str | None = None,
        where: str | None = None, active: bool | None = None,
    ) -> Rule:
        if (resource, event) not in SUBJECTS:
            supported = ", ".join(f"{r}/{e}" for r, e in sorted(SUBJECTS))
            raise errors.InvalidInput(f"subject {resource}/{event} is not supported (supported: {supported})")
        if app_type is not None and app_type not in _APP_TYPES:
            raise errors.InvalidInput("app_type must be GLOBAL or APP")
        rule = Rule(
            id=new_id(), project_id=project_id, name=_name(name), description=description or "",
            resource=resource, event=event, app_type=app_type or "GLOBAL", app_id=app_id,
            select=_checked_select(select), where=_checked_where(where), active=bool(active),
            created_at=self._clock.now_ms(),
        )
        await self._store.create_rule(rule)
        await self._changed()
        return rule

    async def get_rule(self, project_id: str, rule_id: str) -> Rule:
        rule = await self._store.get_rule(project_id, rule_id)
        if rule is None:
            raise errors.NotFound(f"rule {rule_id} not found")
        return rule

    async def list_rules(
        self, project_id: str, filters: Mapping[str, Any], limit: int, marker: str, offset: int
    ) -> Page:
        return await self._store.list_rules(project_id, filters, limit, marker, offset)

    async def update_rule(self, project_id: str, rule_id: str, changes: Mapping[str, Any]) -> Rule:
        """IoTDA's UpdateRule: rule_name, description, select, where, active; absent ones are kept."""
        rule = await self.get_rule(project_id, rule_id)
        fields: dict[str, Any] = {}
        if changes.get("rule_name") is not None:
            fields["name"] = _name(changes["rule_name"])
        if changes.get("description") is not None:
            fields["description"] = changes["description"]
        if "select" in changes:
            fields["select"] = _checked_select(changes["select"])
        if "where" in changes:
            fields["where"] = _checked_where(changes["where"])
        if changes.get("active") is not None:
            fields["active"] = changes["active"]
        updated = replace(rule, **fields)
        await self._store.update_rule(updated)
        await self._changed()
        return updated

    async def delete_rule(self, project_id: str, rule_id: str) -> None:
        if not await self._store.delete_rule(project_id, rule_id):
            raise errors.NotFound(f"rule {rule_id} not found")
        await self._changed()

    async def create_action(self, project_id: str, rule_id: str, channel: str, detail: Mapping[str, Any]) -> Action:
        await self.get_rule(project_id, rule_id)
        action = Action(id=new_id(), rule_id=rule_id, project_id=project_id, channel=channel,
                        detail=self._validated(channel, detail), created_at=self._clock.now_ms())
        await self._store.create_action(action)
        await self._changed()
        return action

    async def get_action(self, project_id: str, action_id: str) -> Action:
        action = await self._store.get_action(project_id, action_id)
        if action is None:
            raise errors.NotFound(f"action {action_id} not found")
        return action

    async def list_actions(
        self, project_id: str, filters: Mapping[str, Any], limit: int, marker: str, offset: int
    ) -> Page:
        return await self._store.list_actions(project_id, filters, limit, marker, offset)

    async def update_action(
        self, project_id: str, action_id: str, channel: str | None, detail: Mapping[str, Any] | None
    ) -> Action:
        action = await self.get_action(project_id, action_id)
        channel = channel or action.channel
        updated = replace(action, channel=channel,
                          detail=self._validated(channel, action.detail if detail is None else detail))
        await self._store.update_action(updated)
        await self._changed()
        return updated

    async def delete_action(self, project_id: str, action_id: str) -> None:
        if not await self._store.delete_action(project_id, action_id):
            raise errors.NotFound(f"action {action_id} not found")
        await self._changed()

    async def dead_letters(self, project_id: str, action_id: str, limit: int, offset: int) -> Page:
        await self.get_action(project_id, action_id)
        return await self._outbox.dead_letters(project_id, action_id, limit, "", offset)

    async def replay(self, project_id: str, action_id: str, ids: list[int] | None) -> int:
        """Dead letters (all, or those of ``ids``) back into the outbox, to be delivered again."""
        await self.get_action(project_id, action_id)
        return await self._outbox.replay(project_id, action_id, ids)

    def _validated(self, channel: str, detail: Mapping[str, Any]) -> Mapping[str, Any]:
        implementation = self._channels.get(channel)
        if implementation is None:
            raise errors.InvalidInput(f"channel must be one of {', '.join(self._channels)}")
        return implementation.validate(detail)

    async def _changed(self) -> None:
        if self._on_change is not None:
            await self._on_change()


def _name(name: str | None) -> str:
    if name is not None and len(name) > _NAME_MAX:
        raise errors.InvalidInput(f"rule_name is longer than {_NAME_MAX} characters")
    return name or ""


def _checked_where(where: str | None) -> str | None:
    if where is None or not where.strip():
        return None
    parse_where(where)
    return where


def _checked_select(select: str | None) -> str | None:
    if select is None or not select.strip():
        return None
    parse_select(select)
    return select
