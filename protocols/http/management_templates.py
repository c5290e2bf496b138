"""Provisioning templates under /v5/iot/{project_id}/provisioning-templates, as IoTDA serves them,
plus this gateway's dry run (``.../{template_id}/evaluate``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleetgate.core.autoregistration import AutoRegistration
from fleetgate.core.certificate_model import Template
from fleetgate.core.provisioning_templates import TemplateService
from fleetgate.protocols.http.iotda import ScopedRoute, body_field, iotda_time, json_body, json_response, page_json, page_params


def template_json(t: Template) -> dict[str, Any]:
    return {
        "template_id": t.id,
        "template_name": t.name,
        "description": t.description,
        "template_body": t.body,
        "create_time": iotda_time(t.created_at),
        "update_time": iotda_time(t.updated_at),
    }


def template_simple_json(t: Template) -> dict[str, Any]:
    """IoTDA's ProvisioningTemplateSimple: the list's items carry no body."""
    return {
        "template_id": t.id,
        "template_name": t.name,
        "description": t.description,
        "create_time": iotda_time(t.created_at),
        "update_time": iotda_time(t.updated_at),
    }


class TemplateRoutes:
    def __init__(self, templates: TemplateService, registration: AutoRegistration) -> None:
        self._templates = templates
        self._registration = registration

    def routes(self) -> list[ScopedRoute]:
        return [
            ("POST", "/provisioning-templates", self.create),
            ("GET", "/provisioning-templates", self.list),
            ("GET", "/provisioning-templates/{template_id}", self.show),
            ("PUT", "/provisioning-templates/{template_id}", self.update),
            ("DELETE", "/provisioning-templates/{template_id}", self.delete),
            ("POST", "/provisioning-templates/{template_id}/evaluate", self.evaluate),
        ]

    async def create(self, request: web.Request, project_id: str) -> web.Response:
        template = await self._templates.create(project_id, await json_body(request))
        return json_response(template_json(template), status=201)

    async def list(self, request: web.Request, project_id: str) -> web.Response:
        limit, marker, offset = page_params(request)
        page = await self._templates.list(project_id, limit, marker, offset, request.query.get("template_name"))
        return json_response(page_json("templates", page, template_simple_json))

    async def show(self, request: web.Request, project_id: str) -> web.Response:
        return json_response(template_json(await self._templates.get(project_id, request.match_info["template_id"])))

    async def update(self, request: web.Request, project_id: str) -> web.Response:
        template = await self._templates.update(project_id, request.match_info["template_id"], await json_body(request))
        return json_response(template_json(template))

    async def delete(self, request: web.Request, project_id: str) -> web.Response:
        await self._templates.delete(project_id, request.match_info["template_id"])
        return web.Response(status=204)

    async def evaluate(self, request: web.Request, project_id: str) -> web.Response:
        """``{"certificate": PEM}`` -> ``{"allowed": true, "action", "device"}`` or
        ``{"allowed": false, "reason", "detail"}``."""
        body = await json_body(request)
        pem = body_field(body, "certificate", str, required=True)
        template = await self._templates.get(project_id, request.match_info["template_id"])
        decision = await self._registration.evaluate(template, pem)
        if decision.registration is None:
            return json_response({"allowed": False, "reason": decision.reason, "detail": decision.detail})
        r = decision.registration
        return json_response({
            "allowed": True,
            "action": decision.reason,
            "device": {
                "device_id": r.device.id, "device_name": r.device.name, "node_id": r.node_id,
                "product_id": r.device.product_id,
                "tags": [{"tag_key": k, "tag_value": v} for k, v in r.tags],
                "policy_ids": list(r.policy_ids),
            },
            "certificate_id": r.ca_id,
            "fingerprint": r.fingerprint,
        })
