"""Delivering one claimed lane of an action's outbox: its rows rendered into IoTDA's push JSON,
sent through the action's channel ``batch_size`` notifications a request, and recorded: what was
delivered is deleted (and the lane released when it is empty), a failure holds the lane and is
retried with back-off, or dead-lettered after ``max_attempts`` or ``max_age``.

Rendering keeps the hot path free of Python objects a notification: a plain rule's property
reports in the lines form are spliced into the push JSON around the device's cached header
(fleetgate.core.forwarding_lines); other rules see the rows decoded into entries.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from fleetgate.core import forwarding_metrics as fm
from fleetgate.core.clock import Clock
from fleetgate.core.forwarding_json import _SECONDS, _SERVICE_ID, _second, notification
from fleetgate.core.forwarding_lines import ReportLines
from fleetgate.core.forwarding_model import (
    Action,
    Channel,
    Delivery,
    DeliveryFailed,
    ForwardingSettings,
    Lane,
    OutboxItem,
    OutboxStore,
)
from fleetgate.core.forwarding_sql import Select, Where
from fleetgate.core.retry import Outage

log = logging.getLogger(__name__)
# A device's header (product, node id, gateway) is read from the database at most this often.
_HEADER_CACHE_MS = 60_000
_HEADER_CACHE_MAX = 100_000


@dataclass(frozen=True, slots=True)
class CompiledRoute:
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


class LaneDelivery:
    """The forwarder's workers deliver the lanes they claim through this; one per forwarder, so
    that they share the device header cache and one outage log a receiver."""

    def __init__(self, outbox: OutboxStore, settings: ForwardingSettings, clock: Clock) -> None:
        self._outbox = outbox
        self._settings = settings
        self._clock = clock
        self._receivers: dict[str, Outage] = {}  # each action's receiver: one warning an outage, one summary
        self._header_cache: dict[str, tuple[int, Mapping[str, Any]]] = {}  # device -> (until, header)
        self._header_json: dict[str, bytes] = {}  # device -> its header's JSON, while the header is the same
        self._header_json_of: dict[str, Mapping[str, Any]] = {}

    async def deliver(self, route: CompiledRoute | None, lane: Lane, owner: str) -> None:
        """Deliver the lane's items in order, ``batch_size`` notifications at a time; at the first
        failure, what came before is recorded as delivered and the rest waits for the retry.
        ``route``: the lane's action's, None when it is no longer active (the lane is released)."""
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
                self.render_lines(route, position, item, headers, flat)
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
        self, route: CompiledRoute, item: OutboxItem, index: int, headers: Mapping[str, Mapping[str, Any]]
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

    def render_lines(
        self, route: CompiledRoute, position: int, item: OutboxItem, headers: Mapping[str, Mapping[str, Any]],
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
        self, route: CompiledRoute, item: OutboxItem, index: int, entry: list[Any],
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
