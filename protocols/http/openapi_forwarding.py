"""The OpenAPI entries of data forwarding: IoTDA's routing rules and rule actions, and this gateway's
dead letters of an action (protocols.http.openapi merges them into /openapi.json)."""

from __future__ import annotations

from typing import Any

from fleetgate.core.forwarding_model import SUBJECTS
from fleetgate.protocols.http.schema import obj as _object
from fleetgate.protocols.http.schema import ref as _ref

_RULES, _ACTIONS = "/routing-rule/rules", "/routing-rule/actions"
_CHANNELS = ["HTTP_FORWARDING", "NATS_FORWARDING"]
_SQL = ("The documented subset of IoTDA's forwarding SQL (docs/forwarding.md); anything outside it is refused "
        "with 400 when the rule is written.")

# (method, path, summary, details for protocols.http.openapi._management)
OPERATIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("POST", _RULES, "Create a forwarding rule (IoTDA's CreateRoutingRule); inactive unless active is true",
     {"body": "RoutingRuleCreate", "status": 201, "returns": "RoutingRule", "description": _SQL}),
    ("GET", _RULES, "List forwarding rules, newest first",
     {"query": ("rule_resource", "rule_event", "app_type", "app_id", "rule_name", "rule_active", "limit", "marker",
                "offset"), "returns": "RoutingRuleList"}),
    ("GET", _RULES + "/{rule_id}", "Show a forwarding rule", {"returns": "RoutingRule"}),
    ("PUT", _RULES + "/{rule_id}", "Change a rule's name, description, select, where or active (IoTDA's UpdateRule)",
     {"body": "RoutingRuleUpdate", "returns": "RoutingRule", "description": _SQL}),
    ("DELETE", _RULES + "/{rule_id}", "Delete a rule, its actions and their undelivered notifications",
     {"status": 204}),
    ("POST", _ACTIONS, "Add an action to a rule (IoTDA's CreateRuleAction)",
     {"body": "RuleActionCreate", "status": 201, "returns": "RuleAction", "errors": (404,),
      "description": "404 when the body's rule_id names no rule of the project."}),
    ("GET", _ACTIONS, "List rule actions, newest first",
     {"query": ("action_rule_id", "channel", "limit", "marker", "offset"), "returns": "RuleActionList"}),
    ("GET", _ACTIONS + "/{rule_action_id}", "Show a rule action (secrets shown as ******)", {"returns": "RuleAction"}),
    ("PUT", _ACTIONS + "/{rule_action_id}", "Change a rule action's channel or channel_detail",
     {"body": "RuleActionUpdate", "returns": "RuleAction"}),
    ("DELETE", _ACTIONS + "/{rule_action_id}", "Delete a rule action and its undelivered notifications",
     {"status": 204}),
    ("GET", _ACTIONS + "/{rule_action_id}/dead-letters", "List an action's dead letters, oldest first",
     {"query": ("limit", "offset"), "returns": "DeadLetterList",
      "description": "Notifications given up on after forwarding_max_attempts attempts, forwarding_max_age_seconds, "
                     "or at the backlog bound (forwarding_backlog_max), by outbox row: one batch of one lane."}),
    ("POST", _ACTIONS + "/{rule_action_id}/dead-letters/replay", "Deliver an action's dead letters again",
     {"body": "DeadLetterReplay", "returns": "DeadLetterReplayed",
      "description": "The listed ids, or every dead letter of the action when the body is empty or has no ids: "
                     "back into the outbox, delivered like new ones."}),
)

_S = {"type": "string"}
_SUBJECT = _object("resource", "event",
                   resource={"type": "string", "enum": sorted({r for r, _ in SUBJECTS})},
                   event={"type": "string", "enum": sorted({e for _, e in SUBJECTS})})
_HTTP = _object("url", url={"type": "string", "description": "http or https URL the notifications are POSTed to"},
                signature_enable={"type": "boolean", "default": False},
                token={"type": "string", "description": "The HMAC-SHA256 key of X-Hub-Signature-256 (write-only)"},
                timeout={"type": "number", "default": 5, "description": "Seconds (this gateway's)"},
                verify_tls={"type": "boolean", "default": True, "description": "This gateway's"},
                ca_cert={"type": "string", "description": "PEM CA certificates to verify the server with"},
                batch_size={"type": "integer", "minimum": 1, "maximum": 1000, "default": 1,
                            "description": "Notifications a request; above 1 a JSON array (this gateway's)"},
                cert_id=_S, cn_name=_S, sni_enable={"type": "boolean"})
_NATS = _object("servers", "subject",
                servers={"type": "array", "items": _S, "description": "nats:// or tls:// URLs"},
                subject=_S, user=_S, password={"type": "string", "description": "Write-only"},
                token={"type": "string", "description": "Write-only"},
                nkey_seed={"type": "string", "description": "Write-only"},
                tls=_object(ca_cert=_S, verify={"type": "boolean", "default": True}),
                timeout={"type": "number", "default": 5}, batch_size={"type": "integer", "default": 100})
_DETAIL = _object(http_forwarding=_HTTP, nats_forwarding=_NATS)
_RULE = {"rule_id": _S, "rule_name": _S, "description": _S, "subject": _SUBJECT,
         "app_type": {"type": "string", "enum": ["GLOBAL", "APP"]}, "app_id": {"type": ["string", "null"]},
         "select": {"type": ["string", "null"]}, "where": {"type": ["string", "null"]}, "active": {"type": "boolean"}}

SCHEMAS: dict[str, Any] = {
    "RoutingRuleCreate": _object("subject", **{k: v for k, v in _RULE.items() if k != "rule_id"}),
    "RoutingRuleUpdate": _object(**{k: v for k, v in _RULE.items() if k in
                                    ("rule_name", "description", "select", "where", "active")}),
    "RoutingRule": _object(*_RULE, **_RULE),
    "RoutingRuleList": _object("rules", "count", rules={"type": "array", "items": _ref("RoutingRule")},
                               count={"type": "integer"}, marker={"type": ["string", "null"]}),
    "RuleActionCreate": _object("rule_id", "channel", "channel_detail", rule_id=_S,
                                channel={"type": "string", "enum": _CHANNELS}, channel_detail=_DETAIL),
    "RuleActionUpdate": _object(channel={"type": "string", "enum": _CHANNELS}, channel_detail=_DETAIL),
    "RuleAction": _object("action_id", "rule_id", "channel", "channel_detail", action_id=_S, rule_id=_S,
                          app_id={"type": ["string", "null"]}, channel={"type": "string", "enum": _CHANNELS},
                          channel_detail=_DETAIL),
    "RuleActionList": _object("actions", "count", actions={"type": "array", "items": _ref("RuleAction")},
                              count={"type": "integer"}, marker={"type": ["string", "null"]}),
    "DeadLetter": _object(id={"type": "integer"}, resource=_S, event=_S, notifications={"type": "integer"},
                          device_ids={"type": "array", "items": _S}, create_time=_S, attempts={"type": "integer"},
                          reason={"type": "string", "enum": ["attempts", "age", "backlog"]},
                          last_error={"type": ["string", "null"]}, dead_time=_S),
    "DeadLetterList": _object("dead_letters", "count", dead_letters={"type": "array", "items": _ref("DeadLetter")},
                              count={"type": "integer"}),
    "DeadLetterReplay": _object(ids={"type": "array", "items": {"type": "integer"}}),
    "DeadLetterReplayed": _object("replayed", replayed={"type": "integer"}),
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


PARAMETERS: dict[str, Any] = {
    "rule_id": {"name": "rule_id", "in": "path", "required": True, "description": "A forwarding rule's id",
                "schema": _S},
    "rule_action_id": {"name": "rule_action_id", "in": "path", "required": True, "description": "A rule action's id",
                  "schema": _S},
    "rule_resource": _query("resource", _S, "Only rules of this subject resource"),
    "rule_event": _query("event", _S, "Only rules of this subject event"),
    "app_type": _query("app_type", {"type": "string", "enum": ["GLOBAL", "APP"]}, "Only rules of this app type"),
    "app_id": _query("app_id", _S, "Only rules of this application"),
    "rule_name": _query("rule_name", _S, "Only rules of this name"),
    "rule_active": _query("active", {"type": "boolean"}, "Only active (true) or inactive (false) rules"),
    "action_rule_id": _query("rule_id", _S, "Only this rule's actions"),
    "channel": _query("channel", {"type": "string", "enum": _CHANNELS}, "Only actions of this channel"),
}
