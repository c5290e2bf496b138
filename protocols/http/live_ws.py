"""The live feed over WebSocket on the management listener, in ThingsBoard's telemetry WebSocket
commands (docs/queries.md): ``/api/ws/plugins/telemetry`` and ``/api/ws``.

The caller authenticates with a management token: the X-Auth-Token header, or ThingsBoard's
``authCmd`` in the first message. A connection sees the devices of its token's project only.

Commands (one JSON object a message, any of these lists in it), each answered with its ``cmdId``
as ``subscriptionId``:

- ``tsSubCmds``: ``{cmdId, entityType: "DEVICE", entityId, keys?, unsubscribe?}``. The first
  answer holds the keys' latest values, the next ones every committed point;
- ``attrSubCmds``: the same for client attributes (``scope`` CLIENT_SCOPE, the default), or for
  the device's status (SERVER_SCOPE: ``active``, ``lastConnectTime``, ``lastDisconnectTime``, as
  ThingsBoard shows it, fleetgate.core.live_status; other server attributes in the first answer);
- ``historyCmds``: ``{cmdId, entityType, entityId, keys, startTs, endTs, interval?, limit?,
  agg?}``: one answer, as the management API's series query computes it.

Answers: ``{"subscriptionId", "errorCode", "errorMsg", "data": {key: [[ts, "value"]]}}``, values
as text as ThingsBoard sends them; errorCode 2 (BAD_REQUEST) for a command that cannot be
served, with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from fleetgate.core import errors, metrics
from fleetgate.core.attributes import AttributeService
from fleetgate.core.devices import require_device
from fleetgate.core.live import Feed, LiveHub, Outbox, Subscription, text_of
from fleetgate.core.ports import DeviceLookup
from fleetgate.core.presence_model import DeviceStatus
from fleetgate.core.telemetry_model import AttributeScope, SortOrder
from fleetgate.core.telemetry_queries import SeriesQueries, TelemetryQueryService
from fleetgate.core.timeseries import Aggregation, IntervalType, SeriesQuery, aggregation_of, plan_buckets
from fleetgate.protocols.http.management import error_response

# ThingsBoard's SubscriptionErrorCode.
INTERNAL_ERROR = 1
BAD_REQUEST = 2
_AUTH_SECONDS = 10.0

log = logging.getLogger(__name__)
_MAX_MESSAGE = 64 * 1024


@dataclass(frozen=True, slots=True)
class LiveLimits:
    connections_per_token: int
    subscriptions_per_connection: int
    buffer_updates: int


class CommandError(Exception):
    pass


class LiveWebSocket:
    def __init__(
        self,
        hub: LiveHub,
        authenticate: Callable[[str | None], Awaitable[str]],
        telemetry: TelemetryQueryService,
        series: SeriesQueries,
        attributes: AttributeService,
        devices: DeviceLookup,
        limits: LiveLimits,
    ) -> None:
        self._hub = hub
        self._authenticate = authenticate
        self._telemetry = telemetry
        self._series = series
        self._attributes = attributes
        self._devices = devices
        self._limits = limits
        self._per_token: dict[str, int] = {}
        self._open: set[web.WebSocketResponse] = set()

    async def close(self) -> None:
        """Shutdown: every connection closed with 1001 (going away)."""
        for ws in list(self._open):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the gateway is shutting down")

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/ws/plugins/telemetry", self.handle), web.get("/api/ws", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=_MAX_MESSAGE)
        if not ws.can_prepare(request).ok:
            return error_response(errors.InvalidInput("This address takes WebSocket connections only"))
        token = request.headers.get("X-Auth-Token")
        # A token in the header is admitted before the handshake completes: a client whose
        # connect has returned already holds its place under the token's connection limit.
        admitted = await self._admit(token) if token else None
        try:
            await ws.prepare(request)
            first: dict[str, Any] | None = None
            if not token:
                first = await _first_message(ws)
                auth = first.get("authCmd") if first else None
                token = auth.get("token") if isinstance(auth, dict) else None
                admitted = await self._admit(token)
            assert admitted is not None
            if isinstance(admitted, _Refusal):
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=admitted.reason.encode()[:120])
                return ws
            await self._serve(ws, admitted, first)
        finally:
            if token and isinstance(admitted, str):
                self._release(token)
        return ws

    async def _admit(self, token: str | None) -> str | _Refusal:
        """The token's project, its place under the limit taken; or why the connection is refused."""
        try:
            project_id = await self._authenticate(token)
        except errors.GatewayError as exc:
            return _Refusal(exc.message)
        assert token is not None
        if self._per_token.get(token, 0) >= self._limits.connections_per_token:
            return _Refusal(f"at most {self._limits.connections_per_token} connections a token")
        self._per_token[token] = self._per_token.get(token, 0) + 1
        return project_id

    def _release(self, token: str) -> None:
        left = self._per_token[token] - 1
        if left:
            self._per_token[token] = left
        else:
            del self._per_token[token]

    async def _serve(self, ws: web.WebSocketResponse, project_id: str, first: dict[str, Any] | None) -> None:
        self._open.add(ws)
        metrics.LIVE_CONNECTIONS.inc()
        session = _Session(self, ws, project_id)
        sender = asyncio.create_task(session.send_updates(), name="live-ws-send")
        try:
            if first is not None:
                await session.commands(first)
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                try:
                    body = orjson.loads(message.data)
                except orjson.JSONDecodeError:
                    await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"messages are JSON objects")
                    break
                if isinstance(body, dict):
                    await session.commands(body)
        finally:
            self._hub.remove(session.outbox)
            session.outbox.close()
            await asyncio.gather(sender, return_exceptions=True)
            metrics.LIVE_CONNECTIONS.dec()
            self._open.discard(ws)


@dataclass(frozen=True, slots=True)
class _Refusal:
    reason: str


async def _first_message(ws: web.WebSocketResponse) -> dict[str, Any] | None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_AUTH_SECONDS):
            message = await ws.receive()
            if message.type is WSMsgType.TEXT:
                with contextlib.suppress(orjson.JSONDecodeError):
                    body = orjson.loads(message.data)
                    return body if isinstance(body, dict) else None
    return None


class _Session:
    def __init__(self, owner: LiveWebSocket, ws: web.WebSocketResponse, project_id: str) -> None:
        self._o = owner
        self._ws = ws
        self._project = project_id
        self.outbox = Outbox(owner._limits.buffer_updates)
        self._subscriptions: dict[int, Subscription] = {}

    async def send_updates(self) -> None:
        while batch := await self.outbox.take():
            for committed_at, update in batch:
                try:
                    await self._ws.send_bytes(orjson.dumps(update))
                except (ConnectionError, RuntimeError):
                    return
                metrics.LIVE_SENT.inc()
                if committed_at:  # an update of committed data, not an answer to a command
                    metrics.LIVE_LATENCY.observe(max(time.time() - committed_at, 0.0))

    async def commands(self, body: dict[str, Any]) -> None:
        for name, run in (("tsSubCmds", self._ts_sub), ("attrSubCmds", self._attr_sub),
                          ("historyCmds", self._history)):
            commands = body.get(name) or []
            for command in commands if isinstance(commands, list) else []:
                cmd_id = command.get("cmdId") if isinstance(command, dict) else None
                if not isinstance(cmd_id, int):
                    continue
                try:
                    await run(cmd_id, command)
                except (CommandError, errors.GatewayError) as exc:
                    message = exc.message if isinstance(exc, errors.GatewayError) else str(exc)
                    self._error(cmd_id, BAD_REQUEST, message)
                except Exception:
                    log.exception("live-feed command %s failed", name)
                    self._error(cmd_id, INTERNAL_ERROR, "internal error")

    def _error(self, cmd_id: int, code: int, message: str) -> None:
        self.outbox.offer({"subscriptionId": cmd_id, "errorCode": code, "errorMsg": message, "data": None}, 0.0)

    def _device(self, command: dict[str, Any]) -> str:
        if command.get("entityType", "DEVICE") != "DEVICE":
            raise CommandError("entityType must be DEVICE")
        device = command.get("entityId")
        if not isinstance(device, str) or not device:
            raise CommandError("entityId is required")
        return device

    def _subscribe(self, cmd_id: int, command: dict[str, Any], feed: Feed) -> Subscription | None:
        """The new subscription, registered; None for an unsubscribe."""
        previous = self._subscriptions.pop(cmd_id, None)
        if previous is not None:
            self._o._hub.remove(self.outbox, cmd_id)
        if command.get("unsubscribe"):
            return None
        device = self._device(command)
        if len(self._subscriptions) >= self._o._limits.subscriptions_per_connection:
            raise CommandError(f"at most {self._o._limits.subscriptions_per_connection} subscriptions a connection")
        keys = _keys(command)
        subscription = Subscription(self.outbox, cmd_id, device, feed, frozenset(keys) if keys else None)
        self._subscriptions[cmd_id] = subscription
        self._o._hub.add(subscription)
        return subscription

    async def _ts_sub(self, cmd_id: int, command: dict[str, Any]) -> None:
        subscription = self._subscribe(cmd_id, command, Feed.TIMESERIES)
        if subscription is None:
            return
        try:
            await self._o._hub.announced()
            latest = await self._o._telemetry.latest(self._project, subscription.device_id, _keys(command))
        except errors.GatewayError:
            self._drop(cmd_id)
            raise
        subscription.answer({v.key: [[v.ts, text_of(v.value)]] for v in latest})

    async def _attr_sub(self, cmd_id: int, command: dict[str, Any]) -> None:
        scope = command.get("scope", "CLIENT_SCOPE")
        if scope not in ("CLIENT_SCOPE", "SERVER_SCOPE"):
            raise CommandError("the live feed carries client attributes (CLIENT_SCOPE) and device status "
                               "(SERVER_SCOPE: active, lastConnectTime, lastDisconnectTime)")
        feed = Feed.CLIENT_ATTRIBUTES if scope == "CLIENT_SCOPE" else Feed.SERVER_ATTRIBUTES
        subscription = self._subscribe(cmd_id, command, feed)
        if subscription is None:
            return
        keys = _keys(command)
        try:
            await self._o._hub.announced()
            if feed is Feed.CLIENT_ATTRIBUTES:
                values = await self._o._attributes.read(
                    self._project, subscription.device_id, AttributeScope.CLIENT, keys)
                data = {v.key: [[v.last_update_ts, text_of(v.value)]] for v in values}
            else:
                data = await self._status(subscription.device_id, keys)
        except errors.GatewayError:
            self._drop(cmd_id)
            raise
        subscription.answer(data)

    async def _status(self, device_id: str, keys: list[str] | None) -> dict[str, list[list[Any]]]:
        """The device's status as ThingsBoard's server attributes, and its other server attributes."""
        values = await self._o._attributes.read(self._project, device_id, AttributeScope.SERVER, keys)
        data = {v.key: [[v.last_update_ts, text_of(v.value)]] for v in values}
        details = await require_device(self._o._devices, self._project, device_id)
        c = details.connectivity
        now = int(time.time() * 1000)
        status = {"active": [[now, "true" if c.status is DeviceStatus.ONLINE else "false"]]}
        if c.last_online_time is not None:
            status["lastConnectTime"] = [[c.last_online_time, str(c.last_online_time)]]
        if c.last_offline_time is not None:
            status["lastDisconnectTime"] = [[c.last_offline_time, str(c.last_offline_time)]]
        data.update((k, v) for k, v in status.items() if keys is None or k in keys)
        return data

    def _drop(self, cmd_id: int) -> None:
        self._subscriptions.pop(cmd_id, None)
        self._o._hub.remove(self.outbox, cmd_id)

    async def _history(self, cmd_id: int, command: dict[str, Any]) -> None:
        device = self._device(command)
        keys = _keys(command)
        if not keys:
            raise CommandError("keys is required")
        start, end = command.get("startTs"), command.get("endTs")
        if not isinstance(start, int) or not isinstance(end, int) or start > end:
            raise CommandError("startTs and endTs are required, startTs before endTs")
        agg = aggregation_of(command.get("agg"))
        interval = command.get("interval")
        buckets = None
        if agg is not Aggregation.NONE:
            buckets = plan_buckets(start, end, interval if isinstance(interval, int) else None,
                                   IntervalType.MILLISECONDS, None)
        limit = command.get("limit")
        query = SeriesQuery(tuple(keys), start, end, agg, buckets,
                            limit if isinstance(limit, int) and 0 < limit <= 10_000 else 100, SortOrder.DESC)
        found = await self._o._series.series(self._project, device, query)
        data = {key: [[p.ts, text_of(p.value)] for p in points] for key, points in found.items() if points}
        self.outbox.offer({"subscriptionId": cmd_id, "errorCode": 0, "errorMsg": None, "data": data}, 0.0)


def _keys(command: dict[str, Any]) -> list[str] | None:
    raw = command.get("keys")
    if not isinstance(raw, str):
        return None
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    return keys or None
