"""The management API under /v5/iot/{project_id}/, in IoTDA's shapes and error format.

Every call carries X-Auth-Token; the token's project must be the path's project,
so one project's token sees nothing of another's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway import errors
from gateway.auth import DeviceAuthenticator
from gateway.model import Product
from protocols.http.errors import retry_headers, status_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "/v5/iot/{project_id}"

_CODES: list[tuple[type[errors.GatewayError], str]] = [
    (errors.MalformedPayload, "IOTDA.000008"),
    (errors.InvalidInput, "IOTDA.000006"),
    (errors.Unauthorized, "IOTDA.000002"),
    (errors.Forbidden, "IOTDA.000004"),
    (errors.NotFound, "IOTDA.000005"),
    (errors.Conflict, "IOTDA.000007"),
    (errors.QuotaExceeded, "IOTDA.000011"),
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


def iotda_time(ms: int) -> str:
    """IoTDA's yyyyMMdd'T'HHmmss'Z' (UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ms / 1000))


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise errors.MalformedPayload(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.MalformedPayload("The body must be a JSON object")
    return body


def product_json(p: Product) -> dict[str, Any]:
    return {
        "product_id": p.id,
        "name": p.name,
        "description": p.description,
        "provision_strategy": p.provision_strategy.value,
        "provision_key": p.provision_key,
        "provision_secret": p.provision_secret,
        "send_ack_on_validation_error": p.send_ack_on_validation_error,
        "create_time": iotda_time(p.created_at),
    }


class ManagementApi:
    def __init__(self, services: Any, auth: DeviceAuthenticator) -> None:
        self._s = services
        self._auth = auth

    def routes(self) -> list[web.RouteDef]:
        r = self._scoped
        return [
            web.post(PREFIX + "/products", r(self.create_product)),
            web.get(PREFIX + "/products", r(self.list_products)),
            web.get(PREFIX + "/products/{product_id}", r(self.show_product)),
            web.put(PREFIX + "/products/{product_id}", r(self.update_product)),
            web.delete(PREFIX + "/products/{product_id}", r(self.delete_product)),
        ]

    def _scoped(self, handler: Callable[[web.Request, str], Awaitable[web.StreamResponse]]) -> Handler:
        """Authenticate the token, check it belongs to the path's project, map errors."""

        async def scoped(request: web.Request) -> web.StreamResponse:
            try:
                project_id = await self._s.projects.project_of(request.headers.get("X-Auth-Token"))
                if project_id != request.match_info["project_id"]:
                    raise errors.Forbidden("The token does not grant access to this project")
                return await handler(request, project_id)
            except errors.GatewayError as exc:
                return error_response(exc)

        return scoped

    async def create_product(self, request: web.Request, project_id: str) -> web.Response:
        body = await json_body(request)
        product = await self._s.products.create(
            project_id,
            _field(body, "name", str, required=True),
            description=_field(body, "description", str) or "",
            strategy=_field(body, "provision_strategy", str) or "DISABLED",
            provision_key=_field(body, "provision_key", str),
            provision_secret=_field(body, "provision_secret", str),
            send_ack_on_validation_error=_field(body, "send_ack_on_validation_error", bool) or False,
        )
        return json_response(product_json(product), status=201)

    async def list_products(self, request: web.Request, project_id: str) -> web.Response:
        limit, marker, offset = page_params(request)
        page = await self._s.products.list(project_id, limit, marker, offset)
        return json_response({"products": [product_json(p) for p in page.items],
                              "page": {"count": page.count, "marker": page.marker}})

    async def show_product(self, request: web.Request, project_id: str) -> web.Response:
        return json_response(product_json(await self._s.products.get(project_id, request.match_info["product_id"])))

    async def update_product(self, request: web.Request, project_id: str) -> web.Response:
        changes = await json_body(request)
        product = await self._s.products.update(project_id, request.match_info["product_id"], changes)
        return json_response(product_json(product))

    async def delete_product(self, request: web.Request, project_id: str) -> web.Response:
        await self._s.products.delete(project_id, request.match_info["product_id"])
        return web.Response(status=204)


def page_params(request: web.Request) -> tuple[int, str, int]:
    """IoTDA's limit (1-50, default 10), marker (24 hex) and offset (0-500)."""
    q = request.query
    limit = _int_param(q.get("limit"), 10, 1, 50, "limit", "IOTDA.000017")
    offset = _int_param(q.get("offset"), 0, 0, 500, "offset", "IOTDA.000018")
    marker = q.get("marker") or "ffffffffffffffffffffffff"
    if len(marker) != 24 or any(c not in "0123456789abcdef" for c in marker):
        raise errors.InvalidInput("marker must be 24 hexadecimal digits")
    return limit, marker, offset


def _int_param(raw: str | None, default: int, lo: int, hi: int, name: str, code: str) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise errors.InvalidInput(f"{name} must be an integer from {lo} to {hi}")
    return value


def _field(body: dict[str, Any], name: str, kind: type, *, required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise errors.InvalidInput(f"{name} is required")
        return None
    if not isinstance(value, kind):
        raise errors.InvalidInput(f"{name} must be a {kind.__name__}")
    return value
