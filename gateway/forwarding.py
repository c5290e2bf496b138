"""Delivering the outbox: each active action's notifications, at least once, in order per device.

An action's outbox is split into lanes (by device). A worker leases a lane, delivers its oldest
items in order, deletes what was delivered and, when the lane is empty, releases it. The lease is
what lets replicas share an action without delivering twice: a lane is held by one worker at a
time; a replica that dies stops renewing its leases, and another takes the lane over when the
lease has run out (what it delivered without deleting is then delivered again: the at-least-once
window, one lease long). A failed delivery is retried with back-off and holds its lane (so a
device's later notifications wait behind it); after ``max_attempts`` or ``max_age`` it is
dead-lettered. Nothing waits on a timer unless something is due: workers wake when this process
commits rows for them (:meth:`Forwarder.wake`, the writer's and the database's notifications),
when a retry or a lease they wait on is due, or at the latest every ``idle_check_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from fleetgate.core import forwarding_metrics as fm
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import GatewayError
from fleetgate.core.forwarding_json import _SECONDS, _SERVICE_ID, _second, notification
from fleetgate.core.forwarding_lines import ReportLines
from fleetgate.core.forwarding_model import (
    Action,
    Channel,
    Delivery,
    DeliveryFailed,
    Lane,
    OutboxItem,
    OutboxStore,
    Route,
    RuleStore,
)
from fleetgate.core.forwarding_sql import Select, Where, parse_select, parse_where
from fleetgate.core.retry import Outage
from fleetgate.core.tasks import OwnedTasks

log = logging.getLogger(__name__)
# A device's header (product, node id, gateway) is read from the database at most this often.
_HEADER_CACHE_MS = 60_000
_HEADER_CACHE_MAX = 100_000


@dataclass(frozen=True, slots=True)
class ForwardingSettings:
    workers_per_action: int = 4
    batch: int = 128  # outbox rows (each a batch's notifications of a lane) a worker takes at a time
    lease_seconds: float = 15.0
    retry_first_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    max_attempts: int = 10
    max_age_seconds: float = 86_400.0
    backlog_max: int = 1_000_000  # undelivered notifications per action; the oldest are dead-lettered beyond
    backlog_warning: float = 0.8  # a warning once the backlog reaches this fraction of the bound
    check_seconds: float = 2.0  # how often the backlog is measured (lag, bound) and the outbox vacuumed
    idle_check_seconds: float = 10.0
    # A worker that ran out of work and is woken by a commit waits this long before it claims:
    # the batches committed meanwhile go out in the same claim and requests, so that a busy
    # ingest path pays for fewer claims, deletes and requests (its priority over forwarding).
    gather_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A route with its rule's where and select parsed (they were checked when the rule was written)."""

    action: Action
    where: Where | None
    select: Select | None
    channel: Channel
    app_id: str | None = None

    @property
    def plain(self) -> bool:
        """Whole notifications, unfiltered, unchanged: what can be written without a dict."""
        return self.where is None and self.select is None and not self.app_id


class Forwarder:
    def __init__(
        self, rules: RuleStore, outbox: OutboxStore, channels: Mapping[str, Channel], settings: ForwardingSettings,
        *, on_routes: Callable[[], Awaitable[None]] | None = None, clock: Clock = SYSTEM_CLOCK,
        owner: str | None = None,
    ) -> None:
        self._rules = rules
        self._outbox = outbox
        self._channels = channels
        self._settings = settings
        self._on_routes = on_routes
        self._clock = clock
        self.owner = owner or secrets.token_hex(8)
        self._routes: dict[str, _Compiled] = {}
        self._workers: dict[str, OwnedTasks] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks = OwnedTasks()
        self._reload = asyncio.Lock()
        self._delivering = 0  # workers between a claim and its record
        self._settled = asyncio.Condition()
        self._warned: set[str] = set()
        self._outage = Outage(log)  # the database's
        self._receivers: dict[str, Outage] = {}
        self._header_cache: dict[str, tuple[int, Mapping[str, Any]]] = {}  # device -> (until, header)
        self._header_json: dict[str, bytes] = {}  # device -> its header's JSON, while the header is the same
        self._header_json_of: dict[str, Mapping[str, Any]] = {}  # each action's receiver: one warning an outage, one summary

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self._routes)

    async def start(self) -> None:
        await self.reload()
        self._tasks.spawn(self._watch())

    async def stop(self) -> None:
        await self._tasks.finish()
        for workers in self._workers.values():
            await workers.finish()
        self._workers.clear()
        for channel in self._channels.values():
            await channel.close()

    async def settled(self) -> None:
        """Until no worker of this process is between a claim and its record: what a receiver has
        been sent is then deleted from the outbox, or scheduled again."""
        async with self._settled:
            await self._settled.wait_for(lambda: not self._delivering)

    def wake(self, action_ids: Sequence[str] | None = None) -> None:
        """Rows were committed for these actions (all when None): idle workers look again."""
        for action_id in self._wake if action_ids is None else action_ids:
            event = self._wake.get(action_id)
            if event is not None:
                event.set()

    def notified(self, payload: str) -> None:
        """The database's notification: ``rules`` when rules changed, else rows to deliver."""
        if payload == "rules":
            self._tasks.spawn(self.reload())
        else:
            self.wake()

    async def reload(self) -> None:
        """Follow the rules: workers for every active rule's action, none for the others."""
        async with self._reload:
            try:
                routes = await self._rules.routes()
            except GatewayError as exc:
                log.warning("forwarding rules not reloaded, the previous ones stay: %s", exc)
                return
            compiled = {route.action.id: self._compile(route) for route in routes}
            current = {k: v for k, v in compiled.items() if v is not None}
            for action_id in [a for a in self._workers if a not in current]:
                await self._workers.pop(action_id).finish()
                self._wake.pop(action_id, None)
            self._routes = current  # type: ignore[assignment]
            for action_id in current:
                if action_id not in self._workers:
                    self._wake[action_id] = event = asyncio.Event()
                    event.set()
                    workers = self._workers[action_id] = OwnedTasks()
                    # An owner each: a lane leased to one worker is not another's, even in this process.
                    for n in range(self._settings.workers_per_action):
                        workers.spawn(self._work(action_id, event, f"{self.owner}-{n}"))
            if self._on_routes is not None:
                await self._on_routes()

    def _compile(self, route: Route) -> _Compiled | None:
        channel = self._channels.get(route.action.channel)
        if channel is None:
            log.warning("action %s: channel %s is not available here", route.action.id, route.action.channel)
            return None
        rule = route.rule
        return _Compiled(
            route.action, parse_where(rule.where) if rule.where else None,
            parse_select(rule.select) if rule.select else None, channel, rule.app_id,
        )

    # workers

    async def _work(self, action_id: str, wake: asyncio.Event, owner: str) -> None:
        s = self._settings
        while True:
            wake.clear()
            try:
                lane = await self._outbox.claim(action_id, owner, self._clock.now_ms(),
                                                round(s.lease_seconds * 1000), s.batch)
                if lane is None:
                    due = await self._outbox.next_due(action_id, owner)
                    self._outage.recovered("forwarding resumed")
                    if await self._idle(wake, due) and s.gather_seconds > 0:
                        await asyncio.sleep(s.gather_seconds)
                    continue
                self._delivering += 1
                try:
                    await self._deliver_lane(lane, owner)
                finally:
                    self._delivering -= 1
                    if not self._delivering:
                        async with self._settled:
                            self._settled.notify_all()
                self._outage.recovered("forwarding resumed")
            except GatewayError as exc:
                self._outage.failed("forwarding paused, the database is unavailable: %s", exc)
                await self._idle(wake, self._clock.now_ms() + round(s.retry_first_seconds * 1000))
            except Exception:
                log.exception("forwarding worker of action %s failed; it starts again", action_id)
                await self._idle(wake, self._clock.now_ms() + round(s.retry_first_seconds * 1000))

    async def _idle(self, wake: asyncio.Event, due: int | None) -> bool:
        """Until woken (True) or something is due (False)."""
        timeout = self._settings.idle_check_seconds
        if due is not None:
            timeout = min(timeout, max((due - self._clock.now_ms()) / 1000, 0.01))
        try:
            async with asyncio.timeout(timeout):
                await wake.wait()
        except TimeoutError:
            return False
        return True

    async def _deliver_lane(self, lane: Lane, owner: str) -> None:
        """Deliver the lane's items in order, ``batch_size`` notifications at a time; at the first
        failure, what came before is recorded as delivered and the rest waits for the retry."""
        route = self._routes.get(lane.action_id)
        if route is None:
            await self._outbox.release(lane, owner)
            return
        label = lane.action_id
        items = lane.items
        headers = await self._headers(items)
        flat: list[tuple[int, int, Delivery]] = []  # (item's position, entry's index, what is sent)
        filtered = 0
        plain = route.plain
        for position, item in enumerate(items):
            if plain and isinstance(item.entries, ReportLines):
                self._render_lines(route, position, item, headers, flat)
                continue
            for index in range(item.delivered, len(item.entries)):
                delivery = self._render(route, item, index, headers)
                if delivery is None:
                    filtered += 1
                else:
                    flat.append((position, index, delivery))
        chunk = max(1, int(route.action.detail.get("batch_size", 1) or 1))
        failed_at: tuple[int, int] | None = None
        error = ""
        for at in range(0, len(flat), chunk):
            group = flat[at:at + chunk]
            try:
                await route.channel.deliver(route.action, [delivery for _, _, delivery in group])
            except DeliveryFailed as exc:
                failed_at, error = (group[0][0], group[0][1]), str(exc)[:500]
                break
            self._receiver(label).recovered("action %s: delivering again", label)
            fm.DELIVERED.labels(label).inc(len(group))
            fm.LAG.labels(label).set(max(0.0, (self._clock.now_ms() - items[group[-1][0]].created_at) / 1000))
        if filtered:
            fm.FILTERED.labels(label).inc(filtered)
        done = items if failed_at is None else items[:failed_at[0]]
        # A lane taken to its end is released with the same statement, for another worker to take.
        drained = failed_at is None and len(items) < self._settings.batch
        if done:
            await self._outbox.delivered(lane, owner, [item.id for item in done], release=drained)
        elif drained:
            await self._outbox.release(lane, owner)
        if failed_at is not None:
            await self._failed(lane, items[failed_at[0]], error, owner, failed_at[1])

    async def _headers(self, items: Sequence[OutboxItem]) -> Mapping[str, Mapping[str, Any]]:
        """The header of each device of these entries that carry none, cached a while."""
        now = self._clock.now_ms()
        wanted: set[str] = set()
        for item in items:
            if isinstance(item.entries, ReportLines):
                wanted |= item.entries.devices(item.delivered)
            else:
                wanted.update(e[0] if isinstance(e, list) else e["d"] for e in item.entries
                              if isinstance(e, list) or "h" not in e)
        missing = [d for d in wanted if self._header_cache.get(d, (0, None))[0] <= now]
        if missing:
            found = await self._outbox.headers(missing)
            until = now + _HEADER_CACHE_MS
            if len(self._header_cache) > _HEADER_CACHE_MAX:
                self._header_cache = {d: v for d, v in self._header_cache.items() if v[0] > now}
            for device_id in missing:
                self._header_cache[device_id] = (until, found.get(device_id) or {"device_id": device_id})
        return {d: self._header_cache[d][1] for d in wanted}  # type: ignore[misc]

    def _render(
        self, route: _Compiled, item: OutboxItem, index: int, headers: Mapping[str, Mapping[str, Any]]
    ) -> Delivery | None:
        entry = item.entries[index]
        if isinstance(entry, list) and route.plain and len(entry[1]) == 1:
            return self._render_report(route, item, index, entry, headers)
        device_id = entry[0] if isinstance(entry, list) else entry["d"]
        header = headers[device_id] if isinstance(entry, list) or "h" not in entry else entry["h"]
        if route.app_id:
            header = {**header, "app_id": route.app_id}
        data = notification(item, entry, header)
        if route.where is not None and not route.where.matches(data):
            return None
        payload = route.select.apply(data) if route.select is not None else data
        return Delivery(orjson.dumps(payload), f"{route.action.id}-{item.id}-{index}", device_id)

    def _render_lines(
        self, route: _Compiled, position: int, item: OutboxItem, headers: Mapping[str, Mapping[str, Any]],
        out: list[tuple[int, int, Delivery]],
    ) -> None:
        """The hot path: a plain rule's property reports in the lines form, each line's fields
        spliced into IoTDA's push JSON (the same JSON as notification() gives), nothing decoded."""
        assert isinstance(item.entries, ReportLines)
        header_json = self._header_json_for
        prefix = f"{route.action.id}-{item.id}-"
        seconds = _SECONDS
        append = out.append
        for index, raw in enumerate(item.entries.raw[item.delivered:], item.delivered):
            if raw[:1] == b"[":  # several readings, or an unusual device id: decoded
                append((position, index, self._render(route, item, index, headers)))  # type: ignore[arg-type]
                continue
            device, stamp, service, properties = raw.split(b"\x1f", 3)
            device_id = device.decode()
            ts = int(stamp)
            second = seconds.get(ts // 1000) or _second(ts)
            at = b"%s.%03dZ" % (second[2], ts % 1000)
            append((position, index, Delivery(b"".join((
                b'{"resource":"device.property","event":"report","event_time":"', second[3],
                b'","event_time_ms":"', at, b'","notify_data":{"header":', header_json(device_id, headers),
                b',"body":{"services":[{"service_id":', service or _SERVICE_ID, b',"properties":', properties,
                b',"event_time":"', at, b'"}]}}}',
            )), prefix + str(index), device_id)))

    def _header_json_for(self, device_id: str, headers: Mapping[str, Mapping[str, Any]]) -> bytes:
        header = self._header_json.get(device_id)
        if header is None or self._header_json_of.get(device_id) is not headers[device_id]:
            header = self._header_json[device_id] = orjson.dumps(headers[device_id])
            self._header_json_of[device_id] = headers[device_id]
        return header

    def _render_report(
        self, route: _Compiled, item: OutboxItem, index: int, entry: list[Any],
        headers: Mapping[str, Mapping[str, Any]],
    ) -> Delivery:
        """The common case, a one-reading property report with no where, select or app_id, written
        as bytes around the properties' JSON: the same JSON as notification() gives, at a third of
        the cost (one forwarded message each)."""
        device_id, ((ts, properties),) = entry[0], entry[1]
        service = entry[2][0] if len(entry) > 2 else None
        header = self._header_json.get(device_id)
        if header is None or self._header_json_of.get(device_id) is not headers[device_id]:
            header = self._header_json[device_id] = orjson.dumps(headers[device_id])
            self._header_json_of[device_id] = headers[device_id]
        second = _second(ts)
        at = f"{second[1]}.{ts % 1000:03d}Z".encode()
        payload = b"".join((
            b'{"resource":"device.property","event":"report","event_time":"', second[0].encode(),
            b'","event_time_ms":"', at, b'","notify_data":{"header":', header,
            b',"body":{"services":[{"service_id":', orjson.dumps(service) if service else _SERVICE_ID,
            b',"properties":', orjson.dumps(properties),
            b',"event_time":"', at, b'"}]}}}',
        ))
        return Delivery(payload, f"{route.action.id}-{item.id}-{index}", device_id)

    async def _failed(self, lane: Lane, item: OutboxItem, error: str, owner: str, delivered: int) -> None:
        """An item of the lane could not be delivered (after its first ``delivered`` entries): it is
        tried again later, or dead-lettered."""
        s = self._settings
        now = self._clock.now_ms()
        attempts = item.attempts + 1
        if attempts >= s.max_attempts or now - item.created_at >= s.max_age_seconds * 1000:
            reason = "attempts" if attempts >= s.max_attempts else "age"
            await self._outbox.dead_letter([item], reason, error, now)
            fm.FAILED.labels(lane.action_id, reason).inc(len(item.entries) - delivered)
            self._receiver(lane.action_id).failed("action %s: %d notifications dead-lettered after %d attempts "
                                                  "(%s): %s", lane.action_id, len(item.entries) - delivered,
                                                  attempts, reason, error)
            return
        delay = min(s.retry_first_seconds * 2 ** (attempts - 1), s.retry_max_seconds)
        await self._outbox.retry(item, error, now + round(delay * 1000), delivered)
        fm.RETRIED.labels(lane.action_id).inc()
        self._receiver(lane.action_id).failed("action %s: delivery failed, retried with back-off (at most %.0f s "
                                              "apart): %s", lane.action_id, s.retry_max_seconds, error)
        await self._outbox.release(lane, owner)

    def _receiver(self, action_id: str) -> Outage:
        outage = self._receivers.get(action_id)
        if outage is None:
            outage = self._receivers[action_id] = Outage(log)
        return outage

    # the backlog: lag, bound

    async def _watch(self) -> None:
        while True:
            try:
                if self._routes:
                    await self._outbox.compact()
                await self.check_backlog()
            except GatewayError as exc:
                log.debug("forwarding backlog not measured: %s", exc)
            except Exception:
                log.exception("forwarding backlog not measured")
            await asyncio.sleep(self._settings.check_seconds)

    async def check_backlog(self) -> None:
        s = self._settings
        now = self._clock.now_ms()
        backlog = await self._outbox.backlog()
        for action_id in self._routes:
            found = backlog.get(action_id)
            count = found.count if found else 0
            oldest = found.oldest if found else None
            fm.BACKLOG.labels(action_id).set(count)
            fm.LAG.labels(action_id).set(0 if oldest is None else max(0.0, (now - oldest) / 1000))
            if count >= s.backlog_max:
                trimmed = await self._outbox.trim(action_id, s.backlog_max, now)
                if trimmed:
                    fm.FAILED.labels(action_id, "backlog").inc(trimmed)
                    log.warning("action %s: backlog at its bound (%d): the oldest %d notifications dead-lettered",
                                action_id, s.backlog_max, trimmed)
            elif count >= s.backlog_max * s.backlog_warning:
                if action_id not in self._warned:
                    self._warned.add(action_id)
                    log.warning("action %s: %d notifications undelivered, %.0f%% of the bound (%d); beyond it the "
                                "oldest are dead-lettered", action_id, count, 100 * count / s.backlog_max,
                                s.backlog_max)
            else:
                self._warned.discard(action_id)
