"""Data forwarding's data between the layers, and the ports it needs: rules, actions, outbox items.

A rule (IoTDA's routing rule) names a subject, ``resource`` and ``event``, with an optional
``where`` and ``select``; an action sends what the rule matches over a channel (HTTP_FORWARDING,
NATS_FORWARDING). Each channel is one implementation of :class:`Channel`, registered with the
forwarder by the composition root, so a new one (Kafka) is one more module there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from fleetgate.core.model import Page

# The subjects that produce notifications: (resource, event).
PROPERTY_REPORT = ("device.property", "report")
MESSAGE_REPORT = ("device.message", "report")
STATUS_UPDATE = ("device.status", "update")
DEVICE_CREATE = ("device", "create")
DEVICE_DELETE = ("device", "delete")
SUBJECTS = frozenset({PROPERTY_REPORT, MESSAGE_REPORT, STATUS_UPDATE, DEVICE_CREATE, DEVICE_DELETE})

# A device's notifications of one action fall in one of this many lanes (migration 0014's index).
LANES = 16


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    project_id: str
    name: str
    description: str
    resource: str
    event: str
    app_type: str = "GLOBAL"
    app_id: str | None = None
    select: str | None = None
    where: str | None = None
    active: bool = False
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class Action:
    """``detail`` is the channel's part of IoTDA's channel_detail (``{"url": ..., "token": ...}``)."""

    id: str
    rule_id: str
    project_id: str
    channel: str
    detail: Mapping[str, Any]
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """An active rule's action, with what delivery needs of its rule."""

    action: Action
    rule: Rule


# An outbox item's entries, as stored (JSON) and decoded: a property report is
# ``[device_id, [[ts, {key: value}], ...]]`` (its readings, made into IoTDA's body at delivery),
# with a third element, each reading's IoTDA service id, for an IoTDA device's report;
# any other notification ``{"d": device_id, "t": event time, "b": body, "h": header, "r": request id}``
# (``h``: the device as it was, for device events; without it, the device's header at delivery;
# ``r``: a device message's id, IoTDA's request_id). Kept as
# decoded, not made into objects: a forwarded data point costs as little as can be.
Entry = list[Any] | dict[str, Any]


def entry_device(entry: Entry) -> str:
    return entry[0] if isinstance(entry, list) else entry["d"]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An outbox row: the notifications of one batch for one action and one lane, in order;
    ``delivered`` of them were delivered already (a retry resumes after them)."""

    id: int
    action_id: str
    lane: int
    resource: str
    event: str
    entries: Sequence[Entry]
    created_at: int
    attempts: int = 0
    delivered: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    item: OutboxItem
    reason: str
    last_error: str | None
    dead_at: int


@dataclass(frozen=True, slots=True)
class Lane:
    """A lane of an action that a worker holds until ``lease_until``; ``items`` are its oldest due."""

    action_id: str
    lane: int
    items: tuple[OutboxItem, ...]


@dataclass(frozen=True, slots=True)
class Backlog:
    """An action's undelivered notifications: how many (counted by outbox rows' entries), and the
    creation time of the oldest."""

    count: int
    oldest: int | None


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
    # False where another process measures the backlog and keeps its bound (a gateway whose
    # delivery runs in a forwarder process of its own): one process's statements, not one each.
    watch: bool = True


class Delivery(NamedTuple):
    """One notification handed to a channel: ``payload`` is the JSON sent, ``message_id`` unique to
    the notification (what lets a receiver or JetStream drop a repeat). A named tuple: one a data
    point forwarded."""

    payload: bytes
    message_id: str
    device_id: str


class DeliveryFailed(Exception):
    """A channel could not deliver; the notification is tried again later (or dead-lettered)."""


class Channel(Protocol):
    """A way out (HTTP POST, a NATS JetStream publish). ``deliver`` sends the deliveries in order
    (one request each, or a batch when the action asks for it), returns once the receiver has taken
    them all, and raises DeliveryFailed when it has not (they are tried again later)."""

    name: str

    def validate(self, detail: Mapping[str, Any]) -> Mapping[str, Any]:
        """The channel_detail part stored for an action; InvalidInput if it cannot be used."""
        ...

    async def deliver(self, action: Action, deliveries: Sequence[Delivery]) -> None: ...

    async def close(self) -> None: ...


class RuleStore(Protocol):
    async def create_rule(self, rule: Rule) -> None: ...

    async def get_rule(self, project_id: str, rule_id: str) -> Rule | None: ...

    async def list_rules(
        self, project_id: str, filters: Mapping[str, Any], limit: int, marker: str, offset: int
    ) -> Page: ...

    async def update_rule(self, rule: Rule) -> None: ...

    async def delete_rule(self, project_id: str, rule_id: str) -> bool: ...

    async def create_action(self, action: Action) -> None: ...

    async def get_action(self, project_id: str, action_id: str) -> Action | None: ...

    async def list_actions(
        self, project_id: str, filters: Mapping[str, Any], limit: int, marker: str, offset: int
    ) -> Page: ...

    async def update_action(self, action: Action) -> None: ...

    async def delete_action(self, project_id: str, action_id: str) -> bool: ...

    async def routes(self) -> list[Route]:
        """Every active rule's actions, across projects: what the forwarder delivers."""
        ...


class OutboxStore(Protocol):
    async def claim(self, action_id: str, owner: str, now: int, lease_ms: int, limit: int) -> Lane | None:
        """A lane of the action no one else holds (or this owner already does) with items due,
        leased to ``owner``; None when no lane has work due now."""
        ...

    async def delivered(self, lane: Lane, owner: str, ids: Sequence[int], *, release: bool = False) -> None:
        """The items of ``ids`` were delivered (deleted); with ``release``, the lane is released too."""
        ...

    async def retry(self, item: OutboxItem, error: str, next_at: int, delivered: int) -> None:
        """The item failed after its first ``delivered`` entries: due again at ``next_at``."""
        ...

    async def dead_letter(self, items: Sequence[OutboxItem], reason: str, error: str | None, now: int) -> None: ...

    async def release(self, lane: Lane, owner: str) -> None: ...

    async def next_due(self, action_id: str, owner: str) -> int | None:
        """When the earliest item of the action waiting for a retry or another owner's lease is due."""
        ...

    async def backlog(self) -> Mapping[str, Backlog]: ...

    async def compact(self) -> None:
        """Reclaim what delivered (deleted) items left behind, so that finding work stays quick."""
        ...

    async def headers(self, device_ids: Sequence[str]) -> Mapping[str, Mapping[str, Any]]:
        """IoTDA's notification header of each device still registered."""
        ...

    async def trim(self, action_id: str, keep: int, now: int) -> int:
        """Dead-letter the action's oldest items beyond ``keep``; how many."""
        ...

    async def dead_letters(self, project_id: str, action_id: str, limit: int, marker: str, offset: int) -> Page: ...

    async def replay(self, project_id: str, action_id: str, ids: Sequence[int] | None) -> int: ...
