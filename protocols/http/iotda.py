"""IoTDA's conventions, shared by the management routes: JSON bodies, times, pages, query parameters.

Route groups describe their routes relative to PREFIX with handlers that take
the request and the caller's project id; management.ManagementApi scopes them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from fleetgate.core import errors
from fleetgate.core.model import Page
from fleetgate.core.device_service import split_keys
from fleetgate.protocols.http.server import MAX_PAYLOAD_BYTES

PREFIX = "/v5/iot/{project_id}"
NO_MARKER = "ffffffffffffffffffffffff"

ScopedHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]
ScopedRoute = tuple[str, str, ScopedHandler]


def iotda_time(ms: int) -> str:
    """IoTDA's yyyyMMdd'T'HHmmss'Z' (UTC)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ms / 1000))


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def page_json(name: str, page: Page, render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A list response: the items under ``name`` and IoTDA's ``page``."""
    return {name: [render(item) for item in page.items], "page": {"count": page.count, "marker": page.marker}}


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.PayloadTooLarge(f"The body is larger than {request.app[MAX_PAYLOAD_BYTES]} bytes") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.MalformedPayload(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.MalformedPayload("The body must be a JSON object")
    return body


def body_field(body: dict[str, Any], name: str, kind: type, *, required: bool = False) -> Any:
    """``body[name]`` when it is a ``kind``; None when absent or null (InvalidInput if required)."""
    value = body.get(name)
    if value is None:
        if required:
            raise errors.InvalidInput(f"{name} is required")
        return None
    if not isinstance(value, kind):
        raise errors.InvalidInput(f"{name} must be {_KINDS.get(kind, kind.__name__)}")
    return value


_KINDS = {str: "a string", bool: "true or false", dict: "a JSON object", int: "an integer"}


def page_params(request: web.Request) -> tuple[int, str, int]:
    """IoTDA's limit (1-50, default 10), marker (24 hex) and offset (0-500)."""
    q = request.query
    limit = int_param(q.get("limit"), 10, 1, 50, "limit", errors.LimitOutOfRange)
    offset = int_param(q.get("offset"), 0, 0, 500, "offset", errors.OffsetOutOfRange)
    marker = q.get("marker") or NO_MARKER
    if len(marker) != 24 or any(c not in "0123456789abcdef" for c in marker):
        raise errors.InvalidInput("marker must be 24 hexadecimal digits")
    return limit, marker, offset


def int_param(
    raw: str | None, default: int, lo: int, hi: int, name: str, error: type[errors.InvalidInput]
) -> int:
    """An integer query parameter within [lo, hi]; ``error`` says which IoTDA code a bad one gets."""
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise error(f"{name} must be an integer from {lo} to {hi}")
    return value


def keys_param(request: web.Request) -> list[str] | None:
    """The comma-separated ``keys`` query parameter; None when absent or empty."""
    return split_keys(request.query.get("keys"))
