"""IoTDA's data forwarding rules under /v5/iot/{project_id}/routing-rule/: rules and their actions
(CreateRoutingRule, ListRoutingRules, ShowRoutingRule, UpdateRoutingRule, DeleteRoutingRule and
the same for actions), in IoTDA's JSON; plus this gateway's dead letters of an action, listed and
replayed."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleetgate.core import errors
from fleetgate.core.forwarding_model import Action, DeadLetter, Rule, entry_device
from fleetgate.core.forwarding_rules import RuleService
from fleetgate.protocols.http.iotda import (
    ScopedRoute,
    body_field,
    iotda_time,
    json_body,
    json_response,
    page_params,
)

_SECRETS = frozenset({"token", "password", "nkey_seed"})
_CHANNEL_KEYS = {"HTTP_FORWARDING": "http_forwarding", "NATS_FORWARDING": "nats_forwarding"}


def rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "rule_id": rule.id, "rule_name": rule.name, "description": rule.description,
        "subject": {"resource": rule.resource, "event": rule.event},
        "app_type": rule.app_type, "app_id": rule.app_id, "select": rule.select, "where": rule.where,
        "active": rule.active,
    }


def action_json(action: Action) -> dict[str, Any]:
    # Secrets are write-only: a listing shows that one is set, never its value.
    detail = {k: ("******" if k in _SECRETS and v else v) for k, v in action.detail.items() if v is not None}
    key = _CHANNEL_KEYS.get(action.channel, action.channel.lower())
    return {"action_id": action.id, "rule_id": action.rule_id, "app_id": None, "channel": action.channel,
            "channel_detail": {key: detail}}


def dead_letter_json(dead: DeadLetter) -> dict[str, Any]:
    """A dead letter is an outbox row: the notifications of one batch for one lane of the action."""
    item = dead.item
    return {"id": item.id, "resource": item.resource, "event": item.event,
            "notifications": len(item.entries) - item.delivered,
            "device_ids": sorted({entry_device(e) for e in item.entries[item.delivered:]}),
            "create_time": iotda_time(item.created_at), "attempts": item.attempts, "reason": dead.reason,
            "last_error": dead.last_error, "dead_time": iotda_time(dead.dead_at)}


class RuleRoutes:
    def __init__(self, rules: RuleService) -> None:
        self._rules = rules

    def routes(self) -> list[ScopedRoute]:
        return [
            ("POST", "/routing-rule/rules", self.create_rule),
            ("GET", "/routing-rule/rules", self.list_rules),
            ("GET", "/routing-rule/rules/{rule_id}", self.show_rule),
            ("PUT", "/routing-rule/rules/{rule_id}", self.update_rule),
            ("DELETE", "/routing-rule/rules/{rule_id}", self.delete_rule),
            ("POST", "/routing-rule/actions", self.create_action),
            ("GET", "/routing-rule/actions", self.list_actions),
            ("GET", "/routing-rule/actions/{rule_action_id}", self.show_action),
            ("PUT", "/routing-rule/actions/{rule_action_id}", self.update_action),
            ("DELETE", "/routing-rule/actions/{rule_action_id}", self.delete_action),
            ("GET", "/routing-rule/actions/{rule_action_id}/dead-letters", self.list_dead_letters),
            ("POST", "/routing-rule/actions/{rule_action_id}/dead-letters/replay", self.replay_dead_letters),
        ]

    async def create_rule(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        subject = body_field(body, "subject", dict, required=True)
        rule = await self._rules.create_rule(
            project_id,
            name=body_field(body, "rule_name", str), description=body_field(body, "description", str),
            resource=body_field(subject, "resource", str, required=True),
            event=body_field(subject, "event", str, required=True),
            app_type=body_field(body, "app_type", str), app_id=body_field(body, "app_id", str),
            select=body_field(body, "select", str), where=body_field(body, "where", str),
            active=body_field(body, "active", bool),
        )
        return json_response(rule_json(rule), status=201)

    async def list_rules(self, request: web.Request, project_id: str) -> web.Response:
        limit, marker, offset = page_params(request)
        q = request.query
        filters: dict[str, Any] = {k: q[k] for k in ("resource", "event", "app_type", "app_id", "rule_name") if q.get(k)}
        if q.get("active"):
            if q["active"] not in ("true", "false"):
                raise errors.InvalidInput("active must be true or false")
            filters["active"] = q["active"] == "true"
        page = await self._rules.list_rules(project_id, filters, limit, marker, offset)
        return json_response({"rules": [rule_json(r) for r in page.items], "count": page.count,
                              "marker": page.marker})

    async def show_rule(self, request: web.Request, project_id: str) -> web.Response:
        return json_response(rule_json(await self._rules.get_rule(project_id, request.match_info["rule_id"])))

    async def update_rule(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        changes = {"rule_name": body_field(body, "rule_name", str), "description": body_field(body, "description", str),
                   "active": body_field(body, "active", bool)}
        for clause in ("select", "where"):
            if clause in body:
                changes[clause] = body_field(body, clause, str)
        rule = await self._rules.update_rule(project_id, request.match_info["rule_id"], changes)
        return json_response(rule_json(rule))

    async def delete_rule(self, request: web.Request, project_id: str) -> web.Response:
        await self._rules.delete_rule(project_id, request.match_info["rule_id"])
        return web.Response(status=204)

    async def create_action(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        channel = body_field(body, "channel", str, required=True)
        action = await self._rules.create_action(
            project_id, body_field(body, "rule_id", str, required=True), channel, _detail(body, channel, True))
        return json_response(action_json(action), status=201)

    async def list_actions(self, request: web.Request, project_id: str) -> web.Response:
        limit, marker, offset = page_params(request)
        filters = {k: request.query[k] for k in ("rule_id", "channel") if request.query.get(k)}
        page = await self._rules.list_actions(project_id, filters, limit, marker, offset)
        return json_response({"actions": [action_json(a) for a in page.items], "count": page.count,
                              "marker": page.marker})

    async def show_action(self, request: web.Request, project_id: str) -> web.Response:
        return json_response(action_json(await self._rules.get_action(project_id, request.match_info["rule_action_id"])))

    async def update_action(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        channel = body_field(body, "channel", str)
        current = await self._rules.get_action(project_id, request.match_info["rule_action_id"])
        detail = _detail(body, channel or current.channel, False)
        action = await self._rules.update_action(project_id, current.id, channel, detail)
        return json_response(action_json(action))

    async def delete_action(self, request: web.Request, project_id: str) -> web.Response:
        await self._rules.delete_action(project_id, request.match_info["rule_action_id"])
        return web.Response(status=204)

    async def list_dead_letters(self, request: web.Request, project_id: str) -> web.Response:
        limit, _, offset = page_params(request)
        page = await self._rules.dead_letters(project_id, request.match_info["rule_action_id"], limit, offset)
        return json_response({"dead_letters": [dead_letter_json(d) for d in page.items], "count": page.count})

    async def replay_dead_letters(self, request: web.Request, project_id: str) -> web.Response:
        """``{"ids": [...]}`` replays those; an empty body or no ``ids``, all of the action's."""
        body = await json_body(request) if await request.read() else {}
        ids = body.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
            raise errors.InvalidInput("ids must be a list of dead letter ids")
        replayed = await self._rules.replay(project_id, request.match_info["rule_action_id"], ids)
        return json_response({"replayed": replayed})


def _detail(body: dict[str, Any], channel: str, required: bool) -> dict[str, Any] | None:
    detail = body_field(body, "channel_detail", dict, required=required)
    if detail is None:
        return None
    key = _CHANNEL_KEYS.get(channel)
    inner = detail.get(key) if key else None
    if not isinstance(inner, dict):
        raise errors.InvalidInput(f"channel_detail.{key or channel.lower()} is required for {channel}")
    return inner
