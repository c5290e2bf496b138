"""Provisioning templates (IoTDA's shape): validation of a template body, and rendering it
from a certificate's subject into the device that would be created.

The rules are those of IoTDA's CreateProvisioningTemplate (seed document 004): names and
descriptions with their lengths and character sets, ``String`` parameters drawn from the
seven ``iotda::certificate::*`` subject fields only, every ``ref`` naming a declared
parameter, ``node_id`` and ``product_id`` required, static product ids and tags within
their limits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fleetgate.core.errors import InvalidInput
from fleetgate.core.pki import SUBJECT_ABBREVIATIONS, SUBJECT_PARAMETERS

_CJK = "\u4e00-\u9fa5"
TEMPLATE_NAME = re.compile(rf"[{_CJK}A-Za-z0-9_-]{{1,128}}")
DESCRIPTION = re.compile(rf"[{_CJK}A-Za-z0-9_?'#().,&%@!-]{{0,2048}}")
STATIC_PRODUCT_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
TAG_KEY = re.compile(rf"[{_CJK}A-Za-z0-9_.-]{{1,64}}")
TAG_VALUE = re.compile(rf"[{_CJK}A-Za-z0-9_.-]{{1,128}}")
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
POLICY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TAGS = 10
MAX_POLICIES = 10

_DEVICE_FIELDS = {"device_name", "device_id", "node_id", "product_id", "tags"}


@dataclass(frozen=True, slots=True)
class Ref:
    parameter: str


@dataclass(frozen=True, slots=True)
class Static:
    value: str


Value = Ref | Static


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated template body, ready to render."""

    parameters: tuple[str, ...]
    node_id: Ref
    product_id: Value
    device_name: Ref | None
    device_id: Ref | None
    tags: tuple[tuple[Value, Value], ...]
    policy_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RenderedDevice:
    """The device a template makes of one certificate."""

    device_id: str
    device_name: str
    node_id: str
    product_id: str
    tags: tuple[tuple[str, str], ...]
    policy_ids: tuple[str, ...]


class RenderError(Exception):
    """The certificate cannot make a device with this template; ``reason`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not TEMPLATE_NAME.fullmatch(name):
        raise InvalidInput(
            "template_name must be 1 to 128 characters: Chinese characters, letters, digits, _ and -")
    return name


def check_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or not DESCRIPTION.fullmatch(description):
        raise InvalidInput(
            "description must be at most 2048 characters: Chinese characters, letters, digits and _?'#().,&%@!-")
    return description


def compile_body(body: Any) -> Plan:
    """The template body as a Plan; InvalidInput naming the first rule it breaks."""
    if not isinstance(body, dict):
        raise InvalidInput("template_body must be a JSON object")
    parameters = _parameters(body.get("parameters"))
    resources = body.get("resources")
    if not isinstance(resources, dict):
        raise InvalidInput("template_body.resources must be a JSON object")
    unknown = set(resources) - {"device", "policy"}
    if unknown:
        raise InvalidInput(f"template_body.resources has unknown fields: {', '.join(sorted(unknown))}")
    device = resources.get("device")
    if not isinstance(device, dict):
        raise InvalidInput("template_body.resources.device must be a JSON object")
    unknown = {k for k, v in device.items() if v is not None} - _DEVICE_FIELDS
    if unknown:
        raise InvalidInput(f"template_body.resources.device has unknown fields: {', '.join(sorted(unknown))}")
    if device.get("node_id") is None:
        raise InvalidInput("template_body.resources.device.node_id is required")
    if device.get("product_id") is None:
        raise InvalidInput("template_body.resources.device.product_id is required")
    where = "template_body.resources.device."
    node_id = _ref(device["node_id"], parameters, where + "node_id")
    product_id = _value(device["product_id"], parameters, where + "product_id", STATIC_PRODUCT_ID,
                        "at most 36 letters, digits, _ and -")
    device_name = _optional_ref(device.get("device_name"), parameters, where + "device_name")
    device_id = _optional_ref(device.get("device_id"), parameters, where + "device_id")
    tags = _tags(device.get("tags"), parameters)
    return Plan(tuple(parameters), node_id, product_id, device_name, device_id, tags,
                _policies(resources.get("policy")))


def _parameters(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise InvalidInput("template_body.parameters must be a JSON object")
    for name, spec in raw.items():
        if name not in SUBJECT_PARAMETERS:
            raise InvalidInput(f"template_body.parameters: {name} is not supported; the parameters are "
                               + ", ".join(SUBJECT_PARAMETERS))
        if not isinstance(spec, dict) or set(spec) != {"type"} or spec["type"] != "String":
            raise InvalidInput(f'template_body.parameters.{name} must be {{"type": "String"}}: only String is supported')
    return list(raw)


def _ref(raw: Any, parameters: list[str], where: str) -> Ref:
    if not isinstance(raw, dict) or set(raw) != {"ref"} or not isinstance(raw["ref"], str):
        raise InvalidInput(f'{where} must be a parameter reference {{"ref": "<parameter>"}}')
    if raw["ref"] not in parameters:
        raise InvalidInput(f"{where} refers to {raw['ref']}, which is not a declared parameter")
    return Ref(raw["ref"])


def _optional_ref(raw: Any, parameters: list[str], where: str) -> Ref | None:
    return None if raw is None else _ref(raw, parameters, where)


def _value(raw: Any, parameters: list[str], where: str, static: re.Pattern[str], rule: str) -> Value:
    if isinstance(raw, str):
        if not static.fullmatch(raw):
            raise InvalidInput(f"{where} must be {rule}")
        return Static(raw)
    if isinstance(raw, dict):
        return _ref(raw, parameters, where)
    raise InvalidInput(f'{where} must be a string or a parameter reference {{"ref": "<parameter>"}}')


def _tags(raw: Any, parameters: list[str]) -> tuple[tuple[Value, Value], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TAGS:
        raise InvalidInput(f"template_body.resources.device.tags must be a list of at most {MAX_TAGS} tags")
    tags = []
    for i, tag in enumerate(raw):
        where = f"template_body.resources.device.tags[{i}]."
        if not isinstance(tag, dict) or set(tag) != {"tag_key", "tag_value"}:
            raise InvalidInput(f"template_body.resources.device.tags[{i}] must be {{tag_key, tag_value}}")
        tags.append((
            _value(tag["tag_key"], parameters, where + "tag_key", TAG_KEY,
                   "at most 64 characters: Chinese characters, letters, digits and _.-"),
            _value(tag["tag_value"], parameters, where + "tag_value", TAG_VALUE,
                   "at most 128 characters: Chinese characters, letters, digits and _.-"),
        ))
    return tuple(tags)


def _policies(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or set(raw) - {"policy_ids"}:
        raise InvalidInput("template_body.resources.policy must be {policy_ids}")
    ids = raw.get("policy_ids") or []
    if not isinstance(ids, list) or len(ids) > MAX_POLICIES or not all(
        isinstance(i, str) and POLICY_ID.fullmatch(i) for i in ids
    ):
        raise InvalidInput(f"template_body.resources.policy.policy_ids must be at most {MAX_POLICIES} ids of "
                           "at most 64 letters, digits, _ and -")
    return tuple(ids)


def render(plan: Plan, subject: dict[str, str]) -> RenderedDevice:
    """The device for a certificate whose subject carries ``subject`` (Huawei parameter -> value).

    Every declared parameter must be present ("the certificate must contain all parameter
    values defined in the template"); rendered values must be valid for a device.
    """
    for name in plan.parameters:
        if not subject.get(name):
            raise RenderError("MISSING_PARAMETER", f"the certificate has no {name} (subject {SUBJECT_ABBREVIATIONS[name]})")

    def value(v: Value) -> str:
        return subject[v.parameter] if isinstance(v, Ref) else v.value

    node_id = value(plan.node_id)
    product_id = value(plan.product_id)
    _rendered(node_id, NODE_ID, "node_id", "at most 64 letters, digits, _ and -")
    _rendered(product_id, STATIC_PRODUCT_ID, "product_id", "at most 36 letters, digits, _ and -")
    device_id = value(plan.device_id) if plan.device_id else f"{product_id}_{node_id}"
    _rendered(device_id, DEVICE_ID, "device_id", "at most 128 letters, digits, _ and -")
    name = value(plan.device_name) if plan.device_name else node_id
    if not 1 <= len(name) <= 256 or any(ord(c) < 0x20 for c in name):
        raise RenderError("INVALID_VALUE", "the rendered device_name must be 1 to 256 characters")
    tags = []
    for key, val in plan.tags:
        k, v = value(key), value(val)
        _rendered(k, TAG_KEY, "tag_key", "at most 64 characters: Chinese characters, letters, digits and _.-")
        _rendered(v, TAG_VALUE, "tag_value", "at most 128 characters: Chinese characters, letters, digits and _.-")
        tags.append((k, v))
    return RenderedDevice(device_id, name, node_id, product_id, tuple(tags), plan.policy_ids)


def _rendered(text: str, pattern: re.Pattern[str], field: str, rule: str) -> None:
    if not pattern.fullmatch(text):
        raise RenderError("INVALID_VALUE", f"the rendered {field} {text!r} is not {rule}")
