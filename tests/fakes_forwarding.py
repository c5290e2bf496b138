"""In-memory fakes of data forwarding's ports (fleetgate.core.forwarding_model): an outbox of one
lane, the rules of one action, a channel that fails a given number of times, a settable clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fleetgate.core.forwarding_model import (
    Action,
    Backlog,
    Delivery,
    DeliveryFailed,
    Lane,
    OutboxItem,
    Route,
    Rule,
)
from fleetgate.core.model import Page

ACTION = Action("a1", "r1", "p1", "FAKE", {"batch_size": 2})


def item(n: int, devices: Sequence[str]) -> OutboxItem:
    entries = [[d, [[1_700_000_000_000 + n * 10 + i, {"v": n * 10 + i}]]] for i, d in enumerate(devices)]
    return OutboxItem(n, "a1", 0, "device.property", "report", entries, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def now_ms(self) -> int:
        return self.now


class FakeOutbox:
    def __init__(self, items: list[OutboxItem], clock: Clock) -> None:
        self.items = items
        self.clock = clock
        self.next_at: dict[int, int] = {}
        self.delays: list[int] = []  # each retry's back-off, in ms
        self.dead: list[tuple[OutboxItem, str]] = []
        self.retries: list[tuple[int, int, int]] = []  # (item id, next_at, delivered)
        self.changed = asyncio.Event()

    async def claim(self, action_id: str, owner: str, now: int, lease_ms: int, limit: int) -> Lane | None:
        if not self.items or self.next_at.get(self.items[0].id, 0) > now:
            return None  # the lane's head waits for its retry, and the lane with it
        return Lane(action_id, 0, tuple(self.items[:limit]))

    async def delivered(self, lane: Lane, owner: str, ids: Sequence[int], *, release: bool = False) -> None:
        self.items = [i for i in self.items if i.id not in ids]
        self.changed.set()

    async def retry(self, item: OutboxItem, error: str, next_at: int, delivered: int) -> None:
        self.retries.append((item.id, next_at, delivered))
        self.delays.append(next_at - self.clock.now)
        self.next_at[item.id] = next_at
        self.items[self.items.index(item)] = OutboxItem(item.id, item.action_id, item.lane, item.resource,
                                                        item.event, item.entries, item.created_at,
                                                        item.attempts + 1, delivered)
        self.changed.set()

    async def dead_letter(self, items: Sequence[OutboxItem], reason: str, error: str | None, now: int) -> None:
        self.dead += [(i, reason) for i in items]
        self.items = [i for i in self.items if i not in items]
        self.changed.set()

    async def release(self, lane: Lane, owner: str) -> None:
        return None

    async def next_due(self, action_id: str, owner: str) -> int | None:
        return self.next_at.get(self.items[0].id) if self.items else None

    async def backlog(self) -> dict[str, Backlog]:
        return {"a1": Backlog(sum(len(i.entries) for i in self.items), 0)} if self.items else {}

    async def compact(self) -> None:
        return None

    async def headers(self, device_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {d: {"device_id": d, "product_id": "prod"} for d in device_ids}

    async def trim(self, action_id: str, keep: int, now: int) -> int:
        return 0

    async def dead_letters(self, *args: Any) -> Page:
        return Page((), 0)

    async def replay(self, *args: Any) -> int:
        return 0


class FakeRules:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    async def routes(self) -> list[Route]:
        return [Route(ACTION, self.rule)]


class FakeChannel:
    name = "FAKE"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.received: list[Delivery] = []

    def validate(self, detail: Any) -> Any:
        return detail

    async def deliver(self, action: Action, deliveries: Sequence[Delivery]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise DeliveryFailed("receiver down")
        self.received += deliveries

    async def close(self) -> None:
        return None


def rule(where: str | None = None) -> Rule:
    return Rule("r1", "p1", "r", "", "device.property", "report", where=where, active=True)
