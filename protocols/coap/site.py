"""ThingsBoard's CoAP device API (spec 1.5, 3.5) as aiocoap's server site.

aiocoap hands each request to ``render_to_pipe``; the site finds its route
(protocols.coap.routes) and answers it on the pipe, at once when it can (a
cached token, a queued upload whose receipt answers later), or from a task it
owns when it must wait (a token lookup, provisioning, an attribute read).
Block1 bodies are reassembled here, within the payload limit, not by aiocoap.
A malformed body's 4.00 says why.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from aiocoap import Code, Message
from aiocoap.pipe import Pipe

from fleetgate.core.device_service import DeviceService
from fleetgate.core.errors import GatewayError, InvalidInput, MethodNotAllowed, Unavailable, UnknownAddress
from fleetgate.core.model import DeviceIdentity
from fleetgate.core.operations import Operation, Params, Reply
from fleetgate.core.provision_json import response_to_json
from fleetgate.core.provisioning_model import ProvisionStatus
from fleetgate.protocols.coap.block2 import block2_answer, continuation
from fleetgate.protocols.coap.blockwise import Block1Uploads, Body, Continue
from fleetgate.protocols.coap.errors import PROTOCOL, refused
from fleetgate.protocols.coap.observe import Observer, json_message
from fleetgate.protocols.coap.receipts import PipeReceipt
from fleetgate.protocols.coap.routes import ROUTES, CoapRoute
from fleetgate.protocols.routing import Match

log = logging.getLogger(__name__)
# Operations answered with raw bytes, in Block2 blocks when large: OTA package chunks.
_RAW = frozenset({Operation.FIRMWARE, Operation.SOFTWARE})

Spawn = Callable[[Coroutine[Any, Any, None]], object]


class DeviceSite:
    """The root resource (aiocoap's ``interfaces.Resource``): every path is routed here."""

    def __init__(self, service: DeviceService, max_payload: int, spawn: Spawn) -> None:
        self._service = service
        self._max_payload = max_payload
        self._spawn = spawn
        self._blocks = Block1Uploads(max_payload)
        self.observers: set[Observer] = set()
        self.accepting = True

    # aiocoap's Resource interface (render_to_pipe supersedes render)

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        return False

    async def render(self, request: Message) -> Message:  # pragma: no cover - render_to_pipe is used
        raise NotImplementedError

    async def render_to_pipe(self, pipe: Pipe) -> None:
        self.handle(pipe)

    def handle(self, pipe: Pipe) -> None:
        """Answer, or start answering, a request: synchronous, so protocols.coap.server calls it
        for aiocoap's context without a task per request (what waits runs in owned tasks)."""
        try:
            self._dispatch(pipe)
        except GatewayError as exc:
            pipe.add_response(refused(exc, self._max_payload), is_last=True)
        except Exception:
            log.exception("a CoAP request failed")
            pipe.add_response(Message(code=Code.INTERNAL_SERVER_ERROR), is_last=True)

    def observing(self, device_id: str) -> bool:
        return any(observer.device.device_id == device_id for observer in self.observers)

    def end_observations(self) -> None:
        for observer in list(self.observers):
            observer.end(refused(Unavailable("The gateway is shutting down"), self._max_payload))

    # routing

    def _dispatch(self, pipe: Pipe) -> None:
        request = pipe.request
        if not self.accepting:
            raise Unavailable("The gateway is shutting down")
        path = "/".join(request.opt.uri_path)
        match = ROUTES.match(path)
        if match is None:
            raise UnknownAddress(f"No resource at /{path}")
        method = request.code.name
        route = match.targets.get(method)
        if route is None:
            allowed = tuple(m for m, r in match.targets.items() if r.refusal is None)
            raise MethodNotAllowed(f"{method} is not allowed here; use {', '.join(allowed)}", allowed)
        if route.refusal is not None:
            raise InvalidInput(route.refusal)
        if route.query or route.observe is not None:
            # A read: the request is in the query, and no body comes in blocks.
            body = Body(_query_body(request.opt.uri_query) if route.query else b"", None)
        elif (body := self._body(pipe)) is None:
            return
        if route.operation is Operation.PROVISION:
            self._provision(pipe, body)
        else:
            self._as_device(pipe, match, lambda device: self._perform(pipe, device, route, match.params, body))

    def _body(self, pipe: Pipe) -> Body | None:
        """The whole request body; None when this was a Block1 block answered with 2.31."""
        fed = self._blocks.feed(pipe.request)
        if isinstance(fed, Continue):
            response = Message(code=Code.CONTINUE)
            response.opt.block1 = fed.block1
            pipe.add_response(response, is_last=True)
            return None
        return fed

    def _as_device(self, pipe: Pipe, match: Match[CoapRoute], proceed: Callable[[DeviceIdentity], Any]) -> None:
        """Run ``proceed`` with the token's device: now if it is cached, else after a lookup.
        ``proceed`` may return a coroutine, which then runs as an owned task."""
        address, token = _address(pipe), match.params["token"]
        try:
            self._service.check_source(address)  # an address blocked for its failures, cached token or not
        except GatewayError as exc:
            pipe.add_response(refused(exc, self._max_payload), is_last=True)
            return
        device = self._service.cached_token(token)
        if device is None:
            self._spawn(self._answering(pipe, self._after_lookup(token, address, proceed)))
            return
        outcome = proceed(device)
        if outcome is not None:
            self._spawn(self._answering(pipe, outcome))

    async def _after_lookup(self, token: str, address: str, proceed: Callable[[DeviceIdentity], Any]) -> None:
        outcome = proceed(await self._service.by_token(token, address))
        if outcome is not None:
            await outcome

    async def _answering(self, pipe: Pipe, work: Coroutine[Any, Any, None]) -> None:
        """Run a handler that answers on ``pipe``; its errors are the answer instead."""
        try:
            await work
        except GatewayError as exc:
            pipe.add_response(refused(exc, self._max_payload), is_last=True)
        except Exception:
            log.exception("a CoAP request failed")
            pipe.add_response(Message(code=Code.INTERNAL_SERVER_ERROR), is_last=True)

    # handlers

    def _perform(
        self, pipe: Pipe, device: DeviceIdentity, route: CoapRoute, params: Params, body: Body
    ) -> Coroutine[Any, Any, None] | None:
        """Do the route's operation for ``device``; a coroutine when the answer must wait."""
        operation = route.operation
        if operation is None:
            self._observe(pipe, device, route, Message(code=Code.CONTENT))
            return None
        handler = self._service.handler(operation)
        if operation.reply is Reply.STORED:
            handler(device, body.payload, params, PROTOCOL, PipeReceipt(pipe, body.block1, self._max_payload))
            return None
        if operation in _RAW:
            if continuation(pipe.request):
                params = {**params, "continuation": True}  # a later block of a chunk already counted
            return self._answer_raw(pipe, handler(device, body.payload, params))
        if operation.reply is Reply.ANSWER:
            return self._answer(pipe, device, route, body, handler(device, body.payload, params))
        handler(device, body.payload, params)
        pipe.add_response(_with_block1(Message(code=Code.CREATED), body), is_last=True)
        return None

    async def _answer(self, pipe: Pipe, device: DeviceIdentity, route: CoapRoute, body: Body,
                      answer: Awaitable[bytes]) -> None:
        self._observe(pipe, device, route, _with_block1(json_message(Code.CONTENT, await answer), body))

    async def _answer_raw(self, pipe: Pipe, answer: Awaitable[bytes]) -> None:
        pipe.add_response(block2_answer(pipe.request, await answer), is_last=True)

    def _observe(self, pipe: Pipe, device: DeviceIdentity, route: CoapRoute, answer: Message) -> None:
        """Answer; with Observe=0 on a route that streams, the stream's notifications follow
        (a plain GET, or a deregistration, gets the answer alone)."""
        if route.observe is not None and pipe.request.opt.observe == 0 and self.accepting:
            Observer(pipe, route.observe, device).start(answer, self._service, self.observers)
        else:
            pipe.add_response(answer, is_last=True)

    def _provision(self, pipe: Pipe, body: Body) -> None:
        async def provision() -> None:
            source = f"coap:{pipe.request.remote.hostinfo}"
            try:
                result = await self._service.provision(body.payload, source, PROTOCOL)
            except InvalidInput as exc:
                # ThingsBoard: an undecodable request or one lacking the key or secret is an empty 4.00.
                pipe.add_response(_with_block1(refused(exc, self._max_payload, reason=False), body), is_last=True)
                return
            code = Code.CREATED if result.status is ProvisionStatus.SUCCESS else Code.BAD_REQUEST
            pipe.add_response(_with_block1(json_message(code, response_to_json(result)), body), is_last=True)

        self._spawn(self._answering(pipe, provision()))


def _with_block1(response: Message, body: Body) -> Message:
    if body.block1 is not None:
        response.opt.block1 = body.block1
    return response


def _query_body(options: tuple[str, ...]) -> bytes:
    """Uri-Query options as the request's JSON body; repeated names are joined with commas, as
    Spring does."""
    query: dict[str, str] = {}
    for option in options:
        name, _, value = option.partition("=")
        query[name] = f"{query[name]},{value}" if name in query else value
    return orjson.dumps(query)


def _address(pipe: Pipe) -> str:
    """The requester's IP address: what the per-address authentication back-off counts."""
    sockaddr = getattr(pipe.request.remote, "sockaddr", None)
    return str(sockaddr[0]) if sockaddr else pipe.request.remote.hostinfo
