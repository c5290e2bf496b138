"""ThingsBoard's HTTP device API (spec 3.3) and claim provisioning (spec 1.3).

Deliberate deviation: a malformed body gets 400 with the reason, where
ThingsBoard answers 500.
"""

from __future__ import annotations

import logging

import orjson
from multidict import MultiMapping
from aiohttp import web

from gateway import codec, metrics
from gateway.auth import DeviceAuthenticator
from gateway.errors import GatewayError, InvalidInput, MalformedPayload, PayloadTooLarge, Unauthorized
from gateway.provision_json import request_from_json, response_to_json
from gateway.provisioning import ProvisioningService
from gateway.uplink import Uplink, split_keys
from protocols.http.errors import device_error
from protocols.http.server import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)
PROTOCOL = "http"


class DeviceApi:
    def __init__(self, auth: DeviceAuthenticator, uplink: Uplink, provisioning: ProvisioningService) -> None:
        self._auth = auth
        self._uplink = uplink
        self._provisioning = provisioning

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/provision", self.provision),
            web.post("/api/v1/{token}/telemetry", self.post_telemetry),
            web.post("/api/v1/{token}/attributes", self.post_attributes),
            web.get("/api/v1/{token}/attributes", self.get_attributes),
        ]

    async def provision(self, request: web.Request) -> web.Response:
        try:
            body = await _read(request)
            provision_request = request_from_json(codec.loads(body), source=f"http:{request.remote}")
        except GatewayError as exc:
            return _refused(exc)
        result = await self._provisioning.provision(provision_request)
        metrics.PROVISIONING.labels(PROTOCOL, result.status.value).inc()
        return web.Response(body=response_to_json(result), content_type="application/json")

    async def post_telemetry(self, request: web.Request) -> web.Response:
        try:
            device = await self._auth.by_token(request.match_info["token"])
            payload = codec.loads(await _read(request))
            await self._uplink.telemetry(device, payload, PROTOCOL)
        except GatewayError as exc:
            return _refused(exc)
        return web.Response()

    async def post_attributes(self, request: web.Request) -> web.Response:
        try:
            device = await self._auth.by_token(request.match_info["token"])
            payload = codec.loads(await _read(request))
            await self._uplink.attributes(device, payload, PROTOCOL)
        except GatewayError as exc:
            return _refused(exc)
        return web.Response()

    async def get_attributes(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            device = await self._auth.by_token(request.match_info["token"])
            # The Python SDK's TBHTTPDevice spells them client_keys/shared_keys.
            client = split_keys(_joined(query, "clientKeys", "client_keys"))
            shared = split_keys(_joined(query, "sharedKeys", "shared_keys"))
            result = await self._uplink.read_attributes(device, client, shared)
        except GatewayError as exc:
            return _refused(exc)
        return web.Response(body=orjson.dumps(result), content_type="application/json")


def _joined(query: MultiMapping[str], *names: str) -> str | None:
    """A repeated parameter joined by commas, as Spring binds it (requests sends lists that way)."""
    values = [v for name in names for v in query.getall(name, [])]
    return ",".join(values) if values else None


async def _read(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"The body is larger than {request.app[MAX_PAYLOAD_BYTES]} bytes") from None


def _refused(exc: GatewayError) -> web.Response:
    if isinstance(exc, PayloadTooLarge):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "oversize").inc()
    elif isinstance(exc, InvalidInput):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "malformed" if isinstance(exc, MalformedPayload) else "invalid").inc()
    elif isinstance(exc, Unauthorized):
        metrics.AUTH_FAILURES.labels(PROTOCOL).inc()
    return device_error(exc)
