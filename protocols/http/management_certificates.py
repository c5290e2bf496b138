"""Device CA certificates under /v5/iot/{project_id}/certificates, as IoTDA serves them, plus a
CRL per CA (``PUT .../certificates/{certificate_id}/crl``, this gateway's own)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fleetgate.core.certificate_model import DeviceCa
from fleetgate.core.device_cas import CaService
from fleetgate.core.errors import InvalidInput
from fleetgate.protocols.http.iotda import ScopedRoute, body_field, iotda_time, json_body, json_response, page_json, page_params


def ca_json(ca: DeviceCa) -> dict[str, Any]:
    return {
        "certificate_id": ca.id,
        "cn_name": ca.cn_name,
        "owner": ca.owner,
        "status": ca.verified,
        "verify_code": ca.verify_code,
        "provision_enable": ca.provision_enable,
        "template_id": ca.template_id,
        "ocsp_enable": False,
        "ocsp_server_ca_id": None,
        "ocsp_ssl_enable": False,
        "create_date": iotda_time(ca.created_at),
        "effective_date": iotda_time(ca.not_before),
        "expiry_date": iotda_time(ca.not_after),
        "crl_uploaded": ca.crl_pem is not None,
    }


class CertificateRoutes:
    def __init__(self, cas: CaService) -> None:
        self._cas = cas

    def routes(self) -> list[ScopedRoute]:
        return [
            ("POST", "/certificates", self.upload),
            ("GET", "/certificates", self.list),
            ("GET", "/certificates/{certificate_id}", self.show),
            ("PUT", "/certificates/{certificate_id}", self.update),
            ("DELETE", "/certificates/{certificate_id}", self.delete),
            ("POST", "/certificates/{certificate_id}/action", self.action),
            ("PUT", "/certificates/{certificate_id}/crl", self.upload_crl),
            ("PUT", "/products/{product_id}/x509-chain", self.set_chain),
            ("DELETE", "/products/{product_id}/x509-chain", self.clear_chain),
        ]

    async def set_chain(self, request: web.Request, project_id: str) -> web.Response:
        """ThingsBoard's X.509 chain strategy on a product: {certificate, certificate_regex,
        allow_create_new_devices}."""
        ca = await self._cas.set_product_chain(project_id, request.match_info["product_id"], await json_body(request))
        return json_response({"product_id": ca.product_id, "certificate_id": ca.id, "cn_name": ca.cn_name,
                              "certificate_regex": ca.cn_pattern, "allow_create_new_devices": ca.allow_create,
                              "expiry_date": iotda_time(ca.not_after)})

    async def clear_chain(self, request: web.Request, project_id: str) -> web.Response:
        await self._cas.clear_product_chain(project_id, request.match_info["product_id"])
        return web.Response(status=204)

    async def upload(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        ca = await self._cas.upload(project_id, body_field(body, "content", str, required=True))
        return json_response(ca_json(ca), status=201)

    async def list(self, request: web.Request, project_id: str) -> web.Response:
        limit, marker, offset = page_params(request)
        return json_response(page_json("certificates", await self._cas.list(project_id, limit, marker, offset),
                                       ca_json))

    async def show(self, request: web.Request, project_id: str) -> web.Response:
        return json_response(ca_json(await self._cas.get(project_id, request.match_info["certificate_id"])))

    async def update(self, request: web.Request, project_id: str) -> web.Response:
        ca = await self._cas.update(project_id, request.match_info["certificate_id"], await json_body(request))
        return json_response(ca_json(ca))

    async def delete(self, request: web.Request, project_id: str) -> web.Response:
        await self._cas.delete(project_id, request.match_info["certificate_id"])
        return web.Response(status=204)

    async def action(self, request: web.Request, project_id: str) -> web.Response:
        """``action_id=verify`` with ``{verify_content}``: 200 and no body once verified."""
        if request.query.get("action_id") != "verify":
            raise InvalidInput("action_id must be verify")
        body = await json_body(request)
        await self._cas.verify(project_id, request.match_info["certificate_id"],
                               body_field(body, "verify_content", str, required=True))
        return web.Response(status=200)

    async def upload_crl(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        ca = await self._cas.upload_crl(project_id, request.match_info["certificate_id"],
                                        body_field(body, "crl", str, required=True))
        return json_response(ca_json(ca))
