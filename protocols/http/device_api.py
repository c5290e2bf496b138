"""ThingsBoard's HTTP device API (spec 3.3) and claim provisioning (spec 1.3).

Deliberate deviation: a malformed body gets 400 with the reason, where
ThingsBoard answers 500. The routes are served by the project's own HTTP/1.1
protocol (protocols.http.connection); ``ROUTES`` lists them for the OpenAPI
document.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from fleetgate.core import codec, metrics
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.credentials import CERTIFICATE_TOKEN
from fleetgate.core.errors import (
    Forbidden, GatewayError, InvalidInput, MalformedPayload, PayloadTooLarge, SourceBlocked, TooManyRequests,
    Unauthorized,
)
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.provision_json import request_from_json, response_to_json
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.uplink import Uplink, split_keys
from fleetgate.protocols.http.connection import Outcome
from fleetgate.protocols.http.errors import retry_headers, status_of
from fleetgate.protocols.http.wire import OK, Reply

log = logging.getLogger(__name__)
PROTOCOL = "http"

ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/api/v1/provision"),
    ("POST", "/api/v1/{token}/telemetry"),
    ("POST", "/api/v1/me/telemetry"),
    ("POST", "/api/v1/me/attributes"),
    ("GET", "/api/v1/me/attributes"),
    ("POST", "/api/v1/{token}/attributes"),
    ("GET", "/api/v1/{token}/attributes"),
)
_NOT_FOUND = Reply.text(404, "Not found")


def _method_not_allowed(allowed: str) -> Reply:
    return Reply.text(405, "Method not allowed", (("Allow", allowed),))


def refused(exc: GatewayError) -> Reply:
    """A core error as the device API answers it: a status and a plain-text reason; 401 has no body."""
    if isinstance(exc, PayloadTooLarge):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "oversize").inc()
    elif isinstance(exc, InvalidInput):
        metrics.BAD_REQUESTS.labels(PROTOCOL, "malformed" if isinstance(exc, MalformedPayload) else "invalid").inc()
    elif isinstance(exc, Unauthorized):
        metrics.AUTH_FAILURES.labels(PROTOCOL).inc()
    elif isinstance(exc, TooManyRequests):
        metrics.LIMIT_REFUSALS.labels(PROTOCOL, type(exc).__name__).inc()
    status = status_of(exc)
    headers = tuple(retry_headers(exc).items())
    return Reply(status, headers=headers) if status == 401 else Reply.text(status, exc.message, headers)


class DeviceApi:
    def __init__(self, auth: DeviceAuthenticator, uplink: Uplink, provisioning: ProvisioningService) -> None:
        self._auth = auth
        self._uplink = uplink
        self._provisioning = provisioning

    def dispatch(
        self, method: bytes, target: bytes, body: bytes, remote: str, certificate: bytes | None = None
    ) -> Outcome:
        path, _, query = target.partition(b"?")
        parts = path.split(b"/")
        if len(parts) < 4 or parts[1] != b"api" or parts[2] != b"v1":
            return _NOT_FOUND
        if len(parts) == 4 and parts[3] == b"provision":
            return self._provision(body, remote) if method == b"POST" else _method_not_allowed("POST")
        if len(parts) != 5:
            return _NOT_FOUND
        token, feature = _token(parts[3]), parts[4]
        if token == CERTIFICATE_TOKEN:
            return self._by_certificate(method, feature, body, query, certificate, remote)
        address = _address(remote)
        if feature == b"telemetry":
            if method != b"POST":
                return _method_not_allowed("POST")
            return self._upload(token, address, body, self._uplink.submit_telemetry)
        if feature == b"attributes":
            if method == b"POST":
                return self._upload(token, address, body, self._uplink.submit_attributes)
            if method == b"GET":
                return self._get_attributes(token, address, query)
            return _method_not_allowed("GET, POST")
        return _NOT_FOUND

    def oversize(self, method: bytes, target: bytes, remote: str = "") -> Outcome:
        """A body over the limit: 401 if the token is unknown (decided before any body), else 413."""
        parts = target.partition(b"?")[0].split(b"/")
        if len(parts) == 5 and parts[1:3] == [b"api", b"v1"]:
            token = _token(parts[3])
            if self._auth.cached_token(token) is None:
                return self._oversize_after_auth(token, _address(remote))
        return refused(PayloadTooLarge("The body is larger than the configured limit"))

    def stored(self, future: asyncio.Future[Any]) -> Reply:
        """The answer once an acknowledgement's future is done."""
        if future.cancelled():
            return Reply.text(503, "The gateway is shutting down")
        exc = future.exception()
        if exc is None:
            return OK
        if isinstance(exc, GatewayError):
            return refused(exc)
        log.error("storing a message failed", exc_info=exc)
        return Reply.text(500, "The message could not be stored")

    # handlers

    def _upload(self, token: str, address: str, body: bytes, submit: Any) -> Outcome:
        try:
            self._auth.check_source(address)
        except GatewayError as exc:
            return refused(exc)
        device = self._auth.cached_token(token)
        if device is None:
            return self._upload_after_auth(token, address, body, submit)
        return _submitted(device, body, submit)

    async def _upload_after_auth(self, token: str, address: str, body: bytes, submit: Any) -> Reply:
        try:
            device = await self._auth.by_token(token, address)
        except GatewayError as exc:
            return refused(exc)
        outcome = _submitted(device, body, submit)
        if isinstance(outcome, Reply):
            return outcome
        await asyncio.wait([outcome])
        return self.stored(outcome)

    async def _oversize_after_auth(self, token: str, address: str) -> Reply:
        try:
            await self._auth.by_token(token, address)
        except GatewayError as exc:
            return refused(exc)
        return refused(PayloadTooLarge("The body is larger than the configured limit"))

    async def _by_certificate(
        self, method: bytes, feature: bytes, body: bytes, query: bytes, certificate: bytes | None, remote: str
    ) -> Reply:
        """``/api/v1/me/...``: the device is the one the HTTPS client certificate names (and
        registers, on its first request, when a device CA's template allows). Refused: 403."""
        if (method, feature) not in ((b"POST", b"telemetry"), (b"POST", b"attributes"), (b"GET", b"attributes")):
            return _NOT_FOUND if feature not in (b"telemetry", b"attributes") else _method_not_allowed(
                "POST" if feature == b"telemetry" else "GET, POST")
        if certificate is None:
            return refused(Unauthorized())
        try:
            device = await self._auth.by_certificate(certificate, f"https:{remote}", _address(remote))
        except Unauthorized:
            metrics.AUTH_FAILURES.labels(PROTOCOL).inc()
            return refused(Forbidden("Not authorized"))
        except SourceBlocked as exc:
            return refused(exc)
        except GatewayError as exc:
            return refused(exc)
        if method == b"GET":
            return await self._attributes_of(device, query)
        outcome = _submitted(device, body, self._uplink.submit_telemetry if feature == b"telemetry"
                             else self._uplink.submit_attributes)
        if isinstance(outcome, Reply):
            return outcome
        await asyncio.wait([outcome])
        return self.stored(outcome)

    async def _get_attributes(self, token: str, address: str, query: bytes) -> Reply:
        try:
            device = await self._auth.by_token(token, address)
        except GatewayError as exc:
            return refused(exc)
        return await self._attributes_of(device, query)

    async def _attributes_of(self, device: DeviceIdentity, query: bytes) -> Reply:
        params = parse_qs(query.decode("latin-1"), keep_blank_values=True)
        # The Python SDK's TBHTTPDevice spells them client_keys/shared_keys, and sends
        # lists as repeated parameters, which Spring joins with commas.
        client = split_keys(_joined(params, "clientKeys", "client_keys"))
        shared = split_keys(_joined(params, "sharedKeys", "shared_keys"))
        try:
            result = await self._uplink.read_attributes(device, client, shared)
        except GatewayError as exc:
            return refused(exc)
        return Reply.json(orjson.dumps(result))

    async def _provision(self, body: bytes, remote: str) -> Reply:
        try:
            request = request_from_json(codec.loads(body), source=f"http:{remote}")
        except GatewayError as exc:
            return refused(exc)
        try:
            result = await self._provisioning.provision(request)
        except GatewayError as exc:
            return refused(exc)
        metrics.PROVISIONING.labels(PROTOCOL, result.status.value, result.code).inc()
        return Reply.json(response_to_json(result))


def _submitted(device: DeviceIdentity, body: bytes, submit: Any) -> Reply | asyncio.Future[None]:
    try:
        future = submit(device, codec.loads(body), PROTOCOL)
    except GatewayError as exc:
        return refused(exc)
    return OK if future is None else future


def _address(remote: str) -> str:
    """The IP address of a connection's ``host:port``."""
    return remote.rpartition(":")[0]


def _token(segment: bytes) -> str:
    text = segment.decode("utf-8", "replace")
    return unquote(text) if "%" in text else text


def _joined(params: dict[str, list[str]], *names: str) -> str | None:
    values = [v for name in names for v in params.get(name, [])]
    return ",".join(values) if values else None
