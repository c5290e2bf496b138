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
What a worker does with a lane it claimed is fleetgate.core.forwarding_delivery's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence

from fleetgate.core import forwarding_metrics as fm
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import GatewayError
from fleetgate.core.forwarding_delivery import CompiledRoute, LaneDelivery
from fleetgate.core.forwarding_model import Channel, ForwardingSettings, Lane, OutboxStore, Route, RuleStore
from fleetgate.core.forwarding_sql import parse_select, parse_where
from fleetgate.core.retry import Outage
from fleetgate.core.tasks import OwnedTasks

log = logging.getLogger(__name__)

__all__ = ["Forwarder", "ForwardingSettings"]


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
        self._routes: dict[str, CompiledRoute] = {}
        self._workers: dict[str, OwnedTasks] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks = OwnedTasks()
        self._reload = asyncio.Lock()
        self._delivering = 0  # workers between a claim and its record
        self._settled = asyncio.Condition()
        self._warned: set[str] = set()
        self._outage = Outage(log)  # the database's
        self._delivery = LaneDelivery(outbox, settings, clock)

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(self._routes)

    async def start(self) -> None:
        await self.reload()
        if self._settings.watch:
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

    def delivers(self, action_id: str) -> bool:
        """Whether this process has workers delivering the action (else another process must be told)."""
        return self._settings.workers_per_action > 0 and action_id in self._workers

    def _compile(self, route: Route) -> CompiledRoute | None:
        channel = self._channels.get(route.action.channel)
        if channel is None:
            log.warning("action %s: channel %s is not available here", route.action.id, route.action.channel)
            return None
        rule = route.rule
        return CompiledRoute(
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
                    await self._delivery.deliver(self._routes.get(lane.action_id), lane, owner)
                finally:
                    self._delivering -= 1
                    if not self._delivering:
                        async with self._settled:
                            self._settled.notify_all()
                self._outage.recovered("forwarding resumed")
                if self._keeping_pace(lane):
                    # Its next claim waits for more batches, so that a claim, a delete and a request
                    # carry many (a forwarder with a core of its own would otherwise claim each batch
                    # as it commits, and cost the database more than the ingest path does).
                    await asyncio.sleep(s.gather_seconds)
            except GatewayError as exc:
                self._outage.failed("forwarding paused, the database is unavailable: %s", exc)
                await self._idle(wake, self._clock.now_ms() + round(s.retry_first_seconds * 1000))
            except Exception:
                log.exception("forwarding worker of action %s failed; it starts again", action_id)
                await self._idle(wake, self._clock.now_ms() + round(s.retry_first_seconds * 1000))

    def _keeping_pace(self, lane: Lane) -> bool:
        """The lane was taken to its end and its oldest row was younger than the gathering time:
        this worker keeps pace with ingestion (one that falls behind claims again at once)."""
        s = self._settings
        return (s.gather_seconds > 0 and 0 < len(lane.items) < s.batch
                and self._clock.now_ms() - lane.items[0].created_at < s.gather_seconds * 1000)

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
