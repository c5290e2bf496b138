"""ThingsBoard's CoAP device API (spec 1.5, 3.5) as aiocoap's server site.

aiocoap hands each request to ``render_to_pipe``; the site answers it on the
pipe, at once when it can (a cached token, a queued upload whose receipt
answers later), or from a task it owns when it must wait (a token lookup,
provisioning, an attribute read). Block1 bodies are reassembled here, within
the payload limit, not by aiocoap. Deviation from ThingsBoard: an unknown path
is 4.04 (ThingsBoard: 4.00), as the issue asks; a malformed body's 4.00 says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from aiocoap import Code, Message
from aiocoap.pipe import Pipe

from fleetgate.core import codec, metrics
from fleetgate.core.auth import DeviceAuthenticator
from fleetgate.core.downlink import Downlink
from fleetgate.core.errors import GatewayError, InvalidInput, Unavailable
from fleetgate.core.model import DeviceIdentity, ProvisionStatus
from fleetgate.core.provision_json import request_from_json, response_to_json
from fleetgate.core.provisioning import ProvisioningService
from fleetgate.core.uplink import Uplink, split_keys
from fleetgate.protocols.coap.blockwise import Block1Uploads, Body, Continue
from fleetgate.protocols.coap.errors import PROTOCOL, MethodNotAllowed, refused
from fleetgate.protocols.coap.observe import Observer, Stream, json_message
from fleetgate.protocols.coap.paths import Feature, route_of
from fleetgate.protocols.coap.receipts import PipeReceipt

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], object]


@dataclass(frozen=True, slots=True)
class CoapServices:
    auth: DeviceAuthenticator
    uplink: Uplink
    provisioning: ProvisioningService
    downlink: Downlink


class DeviceSite:
    """The root resource (aiocoap's ``interfaces.Resource``): every path is routed here."""

    def __init__(self, services: CoapServices, max_payload: int, spawn: Spawn) -> None:
        self._auth = services.auth
        self._uplink = services.uplink
        self._provisioning = services.provisioning
        self._downlink = services.downlink
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
        return any(observer.device_id == device_id for observer in self.observers)

    def end_observations(self) -> None:
        for observer in list(self.observers):
            observer.end(refused(Unavailable("The gateway is shutting down"), self._max_payload))

    # routing

    def _dispatch(self, pipe: Pipe) -> None:
        request = pipe.request
        if not self.accepting:
            raise Unavailable("The gateway is shutting down")
        route = route_of(request.opt.uri_path)
        method = request.code
        feature = route.feature
        if feature is Feature.PROVISION:
            _allow(method, Code.POST)
            if (body := self._body(pipe)) is not None:
                self._provision(pipe, body)
        elif feature is Feature.TELEMETRY:
            if method == Code.GET:
                raise InvalidInput("Can't fetch/subscribe to timeseries updates")
            _allow(method, Code.POST)
            if (body := self._body(pipe)) is not None:
                self._as_device(pipe, route.token, lambda device: self._upload(pipe, device, body, "telemetry"))
        elif feature is Feature.ATTRIBUTES:
            if method == Code.GET:
                self._as_device(pipe, route.token, lambda device: self._attributes(pipe, device))
                return
            _allow(method, Code.POST)
            if (body := self._body(pipe)) is not None:
                self._as_device(pipe, route.token, lambda device: self._upload(pipe, device, body, "attributes"))
        elif feature is Feature.RPC:
            if method == Code.GET:
                self._as_device(pipe, route.token, lambda device: self._rpc_requests(pipe, device))
                return
            _allow(method, Code.POST)
            if (body := self._body(pipe)) is not None:
                self._as_device(pipe, route.token, lambda device: self._client_rpc(pipe, body))
        else:
            _allow(method, Code.POST)
            request_id = route.request_id
            assert request_id is not None
            if (body := self._body(pipe)) is not None:
                self._as_device(pipe, route.token, lambda device: self._rpc_reply(pipe, device, request_id, body))

    def _body(self, pipe: Pipe) -> Body | None:
        """The whole request body; None when this was a Block1 block answered with 2.31."""
        fed = self._blocks.feed(pipe.request)
        if isinstance(fed, Continue):
            response = Message(code=Code.CONTINUE)
            response.opt.block1 = fed.block1
            pipe.add_response(response, is_last=True)
            return None
        return fed

    def _as_device(self, pipe: Pipe, token: str, proceed: Callable[[DeviceIdentity], Any]) -> None:
        """Run ``proceed`` with the token's device: now if it is cached, else after a lookup.
        ``proceed`` may return a coroutine, which then runs as an owned task."""
        address = _address(pipe)
        try:
            self._auth.check_source(address)  # an address blocked for its failures, cached token or not
        except GatewayError as exc:
            pipe.add_response(refused(exc, self._max_payload), is_last=True)
            return
        device = self._auth.cached_token(token)
        if device is None:
            self._spawn(self._answering(pipe, self._after_lookup(token, address, proceed)))
            return
        outcome = proceed(device)
        if outcome is not None:
            self._spawn(self._answering(pipe, outcome))

    async def _after_lookup(self, token: str, address: str, proceed: Callable[[DeviceIdentity], Any]) -> None:
        outcome = proceed(await self._auth.by_token(token, address))
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

    def _upload(self, pipe: Pipe, device: DeviceIdentity, body: Body, kind: str) -> None:
        payload = codec.loads(body.payload)
        receipt = PipeReceipt(pipe, body.block1, self._max_payload)
        if kind == "telemetry":
            self._uplink.submit_telemetry(device, payload, PROTOCOL, receipt)
        else:
            self._uplink.submit_attributes(device, payload, PROTOCOL, receipt)

    def _provision(self, pipe: Pipe, body: Body) -> None:
        try:
            request = request_from_json(codec.loads(body.payload), source=f"coap:{pipe.request.remote.hostinfo}")
        except InvalidInput as exc:
            # ThingsBoard: an undecodable request or one lacking the key or secret is an empty 4.00.
            pipe.add_response(_with_block1(refused(exc, self._max_payload, reason=False), body), is_last=True)
            return

        async def provision() -> None:
            result = await self._provisioning.provision(request)
            metrics.PROVISIONING.labels(PROTOCOL, result.status.value, result.code).inc()
            code = Code.CREATED if result.status is ProvisionStatus.SUCCESS else Code.BAD_REQUEST
            pipe.add_response(_with_block1(json_message(code, response_to_json(result)), body), is_last=True)

        self._spawn(self._answering(pipe, provision()))

    async def _attributes(self, pipe: Pipe, device: DeviceIdentity) -> None:
        """ThingsBoard's attribute request; with Observe=0, shared-attribute updates follow."""
        query = _query(pipe.request.opt.uri_query)
        client = split_keys(query.get("clientKeys") or query.get("client_keys"))
        shared = split_keys(query.get("sharedKeys") or query.get("shared_keys"))
        answer = json_message(Code.CONTENT, orjson.dumps(await self._uplink.read_attributes(device, client, shared)))
        if pipe.request.opt.observe == 0 and self.accepting:
            Observer(pipe, Stream.ATTRIBUTES, device.device_id).start(answer, self._downlink, self.observers)
        else:
            pipe.add_response(answer, is_last=True)

    def _rpc_requests(self, pipe: Pipe, device: DeviceIdentity) -> None:
        """Server-side RPC requests arrive as notifications of an observation; a plain GET
        (or a deregistration) has nothing to wait for and gets an empty 2.05."""
        answer = Message(code=Code.CONTENT)
        if pipe.request.opt.observe == 0:
            Observer(pipe, Stream.RPC, device.device_id).start(answer, self._downlink, self.observers)
        else:
            pipe.add_response(answer, is_last=True)

    def _rpc_reply(self, pipe: Pipe, device: DeviceIdentity, request_id: int, body: Body) -> None:
        """The device's answer to a server-side call; one nobody waits for any more is dropped."""
        self._downlink.rpc_reply(device.device_id, request_id, codec.loads(body.payload))
        pipe.add_response(_with_block1(Message(code=Code.CREATED), body), is_last=True)

    def _client_rpc(self, pipe: Pipe, body: Body) -> None:
        call = codec.loads(body.payload)
        if not isinstance(call, dict):
            raise InvalidInput('A client-side RPC request is {"method": ..., "params": ...}')
        answer = self._downlink.client_rpc(call.get("method"), call.get("params"))
        pipe.add_response(_with_block1(json_message(Code.CONTENT, orjson.dumps(answer)), body), is_last=True)


def _allow(method: Code, allowed: Code) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"{method} is not allowed here; use {allowed}")


def _with_block1(response: Message, body: Body) -> Message:
    if body.block1 is not None:
        response.opt.block1 = body.block1
    return response


def _query(options: tuple[str, ...]) -> dict[str, str]:
    """Uri-Query options as a dict; repeated names are joined with commas, as Spring does."""
    query: dict[str, str] = {}
    for option in options:
        name, _, value = option.partition("=")
        query[name] = f"{query[name]},{value}" if name in query else value
    return query


def _address(pipe: Pipe) -> str:
    """The requester's IP address: what the per-address authentication back-off counts."""
    sockaddr = getattr(pipe.request.remote, "sockaddr", None)
    return str(sockaddr[0]) if sockaddr else pipe.request.remote.hostinfo
