"""The management API under /v5/iot/{project_id}/, in IoTDA's shapes and error format.

Every call carries X-Auth-Token; the token's project must be the path's project,
so one project's token sees nothing of another's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from fleetgate.core import errors, signing
from fleetgate.core.attributes import AttributeService
from fleetgate.core.claiming import Claiming
from fleetgate.core.devices import DeviceManagement
from fleetgate.core.model import Product
from fleetgate.core.ota import OtaService
from fleetgate.core.commands import CommandService
from fleetgate.core.iotda_commands import CommandTimeout, IotdaCommands
from fleetgate.core.iotda_devices import IotdaDevices
from fleetgate.core.forwarding_rules import RuleService
from fleetgate.core.telemetry_queries import SeriesQueries, TelemetryQueryService
from fleetgate.protocols.http.errors import retry_headers, status_of
from fleetgate.protocols.http.iotda import (
    PREFIX,
    ScopedHandler,
    ScopedRoute,
    body_field,
    iotda_time,
    json_body,
    json_response,
    page_json,
    page_params,
)
from fleetgate.protocols.http.management_attributes import AttributeRoutes
from fleetgate.protocols.http.management_certificates import CertificateRoutes
from fleetgate.protocols.http.management_claims import ClaimRoutes
from fleetgate.protocols.http.management_devices import DeviceRoutes
from fleetgate.protocols.http.management_iotda import IotdaRoutes
from fleetgate.protocols.http.management_ota import OtaRoutes
from fleetgate.protocols.http.management_commands import CommandRoutes
from fleetgate.protocols.http.management_telemetry import TelemetryRoutes
from fleetgate.protocols.http.management_templates import TemplateRoutes
from fleetgate.protocols.http.iotda_rules import RuleRoutes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Subclasses before their bases: the first match wins.
_CODES: list[tuple[type[errors.GatewayError], str]] = [
    # This gateway's own codes for templates and device CAs (IoTDA documents none).
    (errors.TemplateQuotaExceeded, "IOTDA.014301"),
    (errors.TemplateNameTaken, "IOTDA.014302"),
    (errors.TemplateInUse, "IOTDA.014303"),
    (errors.CaNotVerified, "IOTDA.014304"),
    (errors.VerificationFailed, "IOTDA.014305"),
    (errors.CaTaken, "IOTDA.014306"),
    (errors.CaQuotaExceeded, "IOTDA.014307"),
    (errors.ClaimingNotAllowed, "IOTDA.014311"),
    (errors.ClaimSecretMismatch, "IOTDA.014312"),
    (errors.ClaimExpired, "IOTDA.014313"),
    (errors.DeviceAlreadyClaimed, "IOTDA.014314"),
    (errors.LimitOutOfRange, "IOTDA.000017"),
    (errors.OffsetOutOfRange, "IOTDA.000018"),
    (errors.InvalidTime, "IOTDA.000009"),
    (errors.InvalidTimeRange, "IOTDA.000010"),
    (errors.MalformedPayload, "IOTDA.000008"),
    (errors.InvalidInput, "IOTDA.000006"),
    (errors.Unauthorized, "IOTDA.000002"),
    (errors.Forbidden, "IOTDA.000004"),
    (errors.NotFound, "IOTDA.000005"),
    (errors.DeviceNotConnected, "IOTDA.014016"),
    (errors.Conflict, "IOTDA.000007"),
    (CommandTimeout, "IOTDA.014111"),
    (errors.RpcTimeout, "IOTDA.000021"),
    (errors.QuotaExceeded, "IOTDA.000020"),
    (errors.Overloaded, "IOTDA.021101"),
    (errors.Unavailable, "IOTDA.000003"),
]


def error_code(exc: errors.GatewayError) -> str:
    return next((code for kind, code in _CODES if isinstance(exc, kind)), "IOTDA.000001")


def error_response(exc: errors.GatewayError) -> web.Response:
    return web.Response(
        status=status_of(exc),
        body=orjson.dumps({"error_code": error_code(exc), "error_msg": exc.message}),
        content_type="application/json",
        headers=retry_headers(exc),
    )


def product_json(p: Product) -> dict[str, Any]:
    return {
        "product_id": p.id,
        "name": p.name,
        "description": p.description,
        "provision_strategy": p.provision_strategy.value,
        "provision_key": p.provision_key,
        "provision_secret": p.provision_secret,
        "send_ack_on_validation_error": p.send_ack_on_validation_error,
        "allow_claiming": p.allow_claiming,
        "create_time": iotda_time(p.created_at),
    }


class ManagementApi:
    def __init__(
        self,
        services: Any,
        *,
        devices: DeviceManagement,
        attributes: AttributeService,
        telemetry: TelemetryQueryService,
        commands: CommandService,
        claiming: Claiming | None = None,
        ota: OtaService | None = None,
        series: SeriesQueries | None = None,
        forwarding: RuleService | None = None,
        iotda: tuple[IotdaDevices, IotdaCommands] | None = None,
    ) -> None:
        self._s = services
        self._groups = (
            DeviceRoutes(devices, iotda[0] if iotda else None), AttributeRoutes(attributes),
            TelemetryRoutes(telemetry, series), CommandRoutes(commands, iotda[1] if iotda else None),
            *((IotdaRoutes(*iotda),) if iotda is not None else ()),
            TemplateRoutes(services.templates, services.registration), CertificateRoutes(services.cas),
            *((ClaimRoutes(claiming, devices),) if claiming is not None else ()),
            *((OtaRoutes(ota),) if ota is not None else ()),
            *((RuleRoutes(forwarding),) if forwarding is not None else ()),
        )

    def routes(self) -> list[web.RouteDef]:
        scoped = [*self._product_routes(), *(route for group in self._groups for route in group.routes())]
        return [web.route(method, PREFIX + path, self._scoped(handler)) for method, path, handler in scoped]

    def _product_routes(self) -> list[ScopedRoute]:
        return [
            ("POST", "/products", self.create_product),
            ("GET", "/products", self.list_products),
            ("GET", "/products/{product_id}", self.show_product),
            ("PUT", "/products/{product_id}", self.update_product),
            ("DELETE", "/products/{product_id}", self.delete_product),
        ]

    def _scoped(self, handler: ScopedHandler) -> Handler:
        """Authenticate the token, check it belongs to the path's project, map errors."""

        async def scoped(request: web.Request) -> web.StreamResponse:
            try:
                project_id = await self._caller(request)
                if project_id != request.match_info["project_id"]:
                    raise errors.Forbidden("The token does not grant access to this project")
                return await handler(request, project_id)
            except errors.GatewayError as exc:
                return error_response(exc)

        return scoped

    async def _caller(self, request: web.Request) -> str:
        """The caller's project: by X-Auth-Token, or by an SDK-HMAC-SHA256 signature (AK/SK)."""
        authorization = request.headers.get("Authorization")
        if not signing.is_signed(authorization) or request.headers.get("X-Auth-Token"):
            return await self._s.projects.project_of(request.headers.get("X-Auth-Token"))
        assert authorization is not None
        signed = signing.SignedRequest(
            method=request.method,
            raw_path=request.rel_url.raw_path,
            query=[(k, v) for k, v in request.query.items()],
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
        )
        return await self._s.projects.project_of_signature(authorization, signed)

    async def create_product(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        allow_claiming = body_field(body, "allow_claiming", bool)
        product = await self._s.products.create(
            project_id,
            body_field(body, "name", str, required=True),
            description=body_field(body, "description", str) or "",
            strategy=body_field(body, "provision_strategy", str) or "DISABLED",
            provision_key=body_field(body, "provision_key", str),
            provision_secret=body_field(body, "provision_secret", str),
            send_ack_on_validation_error=body_field(body, "send_ack_on_validation_error", bool) or False,
            allow_claiming=True if allow_claiming is None else allow_claiming,
        )
        return json_response(product_json(product), status=201)

    async def list_products(self, request: web.Request, project_id: str) -> web.Response:
        limit, marker, offset = page_params(request)
        page = await self._s.products.list(project_id, limit, marker, offset)
        return json_response(page_json("products", page, product_json))

    async def show_product(self, request: web.Request, project_id: str) -> web.Response:
        return json_response(product_json(await self._s.products.get(project_id, request.match_info["product_id"])))

    async def update_product(self, request: web.Request, project_id: str) -> web.Response:
        changes = await json_body(request)
        product = await self._s.products.update(project_id, request.match_info["product_id"], changes)
        return json_response(product_json(product))

    async def delete_product(self, request: web.Request, project_id: str) -> web.Response:
        await self._s.products.delete(project_id, request.match_info["product_id"])
        return web.Response(status=204)
