"""ThingsBoard's HTTP device API (spec 3.3) and claim provisioning (spec 1.3): a route table
from method and path to the device service's operations.

Deliberate deviation: a malformed body gets 400 with the reason, where
ThingsBoard answers 500. The routes are served by the project's own HTTP/1.1
protocol (protocols.http.connection); ``ROUTES`` also feeds the OpenAPI document. A route
without an operation is a long poll (protocols.http.long_polls).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from fleetgate.core.device_service import DeviceService
from fleetgate.core.errors import (
    GatewayError, MethodNotAllowed, PayloadTooLarge, Unauthorized, UnknownAddress,
)
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import Operation, Params, Reply as Answered
from fleetgate.core.provision_json import response_to_json
from fleetgate.protocols.http.connection import Outcome
from fleetgate.protocols.http.errors import refused
from fleetgate.protocols.http.long_polls import DEFAULT_POLL_GRACE, Feed, LongPolls
from fleetgate.protocols.http.wire import OK, Reply
from fleetgate.protocols.routing import Match, RouteTable

log = logging.getLogger(__name__)
PROTOCOL = "http"


class Auth(enum.Enum):
    TOKEN = "token"  # the access token in the path
    CERTIFICATE = "certificate"  # the HTTPS client certificate: /api/v1/me/...
    NONE = "none"


@dataclass(frozen=True, slots=True)
class HttpRoute:
    operation: Operation | None  # None: a long poll for ``poll``
    auth: Auth = Auth.TOKEN
    query: bool = False  # the query string is the request, in the body's JSON form
    poll: Feed | None = None  # what a long poll waits for (protocols.http.long_polls)

    def __post_init__(self) -> None:
        if (self.operation is None) == (self.poll is None):
            raise ValueError("a route performs an operation or is a long poll, one of the two")


def _route(
    method: str, path: str, operation: Operation | None, auth: Auth = Auth.TOKEN, *, query: bool = False,
    poll: Feed | None = None,
) -> tuple[str, str, HttpRoute]:
    return method, path, HttpRoute(operation, auth, query, poll)


ROUTES: RouteTable[HttpRoute] = RouteTable([
    _route("POST", "/api/v1/provision", Operation.PROVISION, Auth.NONE),
    _route("POST", "/api/v1/me/telemetry", Operation.TELEMETRY, Auth.CERTIFICATE),
    _route("POST", "/api/v1/me/attributes", Operation.ATTRIBUTES, Auth.CERTIFICATE),
    _route("GET", "/api/v1/me/attributes", Operation.ATTRIBUTE_REQUEST, Auth.CERTIFICATE, query=True),
    _route("POST", "/api/v1/{token}/telemetry", Operation.TELEMETRY),
    _route("POST", "/api/v1/{token}/attributes", Operation.ATTRIBUTES),
    _route("GET", "/api/v1/{token}/attributes", Operation.ATTRIBUTE_REQUEST, query=True),
    _route("GET", "/api/v1/{token}/attributes/updates", None, query=True, poll=Feed.ATTRIBUTES),
    _route("GET", "/api/v1/{token}/rpc", None, query=True, poll=Feed.RPC),
    _route("POST", "/api/v1/{token}/rpc", Operation.CLIENT_RPC),
    _route("POST", "/api/v1/{token}/rpc/{request_id:int}", Operation.RPC_REPLY),
    _route("POST", "/api/v1/{token}/claim", Operation.CLAIM),
    _route("GET", "/api/v1/{token}/firmware", Operation.FIRMWARE, query=True),
    _route("GET", "/api/v1/{token}/software", Operation.SOFTWARE, query=True),
])
# Operations answered with raw bytes rather than JSON: OTA package chunks.
_RAW = frozenset({Operation.FIRMWARE, Operation.SOFTWARE})
_NOT_FOUND = refused(UnknownAddress("Not found"))
_TOO_LARGE = PayloadTooLarge("The body is larger than the configured limit")


class DeviceApi:
    """What a device HTTP connection asks (protocols.http.connection.DeviceApiPort)."""

    def __init__(self, service: DeviceService, max_long_polls: int = 10_000,
                 poll_grace: float = DEFAULT_POLL_GRACE) -> None:
        self._service = service
        self._handlers = {operation: service.handler(operation) for operation in Operation}
        self.polls = LongPolls(service, max_long_polls, poll_grace)

    def opened(self, address: str) -> Reply | None:
        """A new connection from ``address``: None if admitted, else the refusal to send."""
        try:
            self._service.open_connection(address)
        except GatewayError as exc:
            return refused(exc)
        return None

    def closed(self, address: str) -> None:
        self._service.close_connection(address)

    def dispatch(
        self, method: bytes, target: bytes, body: bytes, remote: str, certificate: bytes | None = None
    ) -> Outcome:
        path, _, query = target.partition(b"?")
        match = ROUTES.match(path.decode("utf-8", "replace"))
        if match is None:
            return _NOT_FOUND
        route = match.targets.get(method.decode("latin-1"))
        if route is None:
            allowed = tuple(sorted(match.targets))
            return refused(MethodNotAllowed("Method not allowed", allowed))
        if route.query:
            body = _query_body(query)
        if route.auth is Auth.NONE:
            return self._provision(body, remote)
        if route.auth is Auth.CERTIFICATE:
            return self._by_certificate(route, match, body, certificate, remote)
        token: str = match.params["token"]
        if "%" in token:
            token = unquote(token)
        address = remote.rpartition(":")[0]
        try:
            self._service.check_source(address)
        except GatewayError as exc:
            return refused(exc)
        device = self._service.cached_token(token)
        if device is None:
            return self._after_auth(route, match, body, token, address)
        return self._perform(device, route, match.params, body)

    def oversize(self, method: bytes, target: bytes, remote: str = "") -> Outcome:
        """A body over the limit: 401 if the token is unknown (decided before any body), else 413."""
        match = ROUTES.match(target.partition(b"?")[0].decode("utf-8", "replace"))
        if match is not None and "token" in match.params:
            token = _token(match)
            if self._service.cached_token(token) is None:
                return self._oversize_after_auth(token, _address(remote))
        return refused(_TOO_LARGE)

    def stored(self, future: asyncio.Future[Any]) -> Reply:
        """The answer once an acknowledgement's future is done."""
        if future.cancelled():
            return Reply.text(503, "The gateway is shutting down")
        exc = future.exception()
        if exc is None:
            result = future.result()
            return result if isinstance(result, Reply) else OK  # a long poll's answer, or "stored"
        if isinstance(exc, GatewayError):
            return refused(exc)
        log.error("storing a message failed", exc_info=exc)
        return Reply.text(500, "The message could not be stored")

    def abandoned(self, future: asyncio.Future[Any]) -> None:
        """The client waiting for ``future`` went away: a long poll is detached at once."""
        self.polls.abandon(future)

    def stopping(self) -> None:
        self.polls.close()

    # the operation, once the device is known

    def _perform(self, device: DeviceIdentity, route: HttpRoute, params: Params, body: bytes) -> Outcome:
        operation = route.operation
        if operation is None:
            return self.polls.open(device, route.poll, body)  # type: ignore[arg-type]  # one or the other
        handler = self._handlers[operation]
        try:
            if operation.reply is Answered.STORED:
                future = handler(device, body, params, PROTOCOL)
                return OK if future is None else future
            if operation.reply is Answered.ANSWER:
                return _answered(handler(device, body, params), operation in _RAW)
            handler(device, body, params)
        except GatewayError as exc:
            return refused(exc)
        return OK

    async def _after_auth(self, route: HttpRoute, match: Match[HttpRoute], body: bytes, token: str,
                          address: str) -> Reply | asyncio.Future[Any]:
        try:
            device = await self._service.by_token(token, address)
        except GatewayError as exc:
            return refused(exc)
        outcome = self._perform(device, route, match.params, body)
        if route.poll is not None and isinstance(outcome, asyncio.Future):
            return outcome  # the connection waits for a long poll with a callback, not with this task
        return await self._settled(outcome)

    async def _by_certificate(
        self, route: HttpRoute, match: Match[HttpRoute], body: bytes, certificate: bytes | None, remote: str
    ) -> Reply:
        """``/api/v1/me/...``: the device is the one the HTTPS client certificate names (and
        registers, on its first request, when a device CA's template allows). Refused: 403."""
        if certificate is None:
            return refused(Unauthorized())
        try:
            device = await self._service.by_certificate(certificate, f"https:{remote}", _address(remote))
        except GatewayError as exc:
            return refused(exc)
        return await self._settled(self._perform(device, route, match.params, body))

    async def _settled(self, outcome: Outcome) -> Reply:
        if isinstance(outcome, Reply):
            return outcome
        if isinstance(outcome, asyncio.Future):
            await asyncio.wait([outcome])
            return self.stored(outcome)
        return await outcome

    async def _oversize_after_auth(self, token: str, address: str) -> Reply:
        try:
            await self._service.by_token(token, address)
        except GatewayError as exc:
            return refused(exc)
        return refused(_TOO_LARGE)

    async def _provision(self, body: bytes, remote: str) -> Reply:
        try:
            result = await self._service.provision(body, f"http:{remote}", PROTOCOL)
        except GatewayError as exc:
            return refused(exc)
        return Reply.json(response_to_json(result))


async def _answered(answer: Awaitable[bytes], raw: bool = False) -> Reply:
    try:
        body = await answer
    except GatewayError as exc:
        return refused(exc)
    return Reply(200, body, "application/octet-stream") if raw else Reply.json(body)


def _query_body(query: bytes) -> bytes:
    """The query as the request's JSON body. The Python SDK's TBHTTPDevice sends lists as
    repeated parameters, which Spring joins with commas."""
    params = parse_qs(query.decode("latin-1"), keep_blank_values=True)
    return orjson.dumps({name: ",".join(values) for name, values in params.items()})


def _address(remote: str) -> str:
    """The IP address of a connection's ``host:port``."""
    return remote.rpartition(":")[0]


def _token(match: Match[HttpRoute]) -> str:
    text: str = match.params["token"]
    return unquote(text) if "%" in text else text
