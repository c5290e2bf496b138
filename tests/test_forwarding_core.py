"""The forwarder (fleetgate.core.forwarding) on in-memory fakes of its ports: order, retries with
back-off resuming after what was delivered, dead letters after the attempts, the where filter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fleetgate.core.forwarding import Forwarder, ForwardingSettings
from fleetgate.core.forwarding_model import Action, Delivery, DeliveryFailed, Lane, OutboxItem
from tests.fakes_forwarding import Clock, FakeChannel, FakeOutbox, FakeRules, item, rule

SETTINGS = ForwardingSettings(workers_per_action=1, retry_first_seconds=1.0, retry_max_seconds=4.0, max_attempts=3,
                              idle_check_seconds=0.05, check_seconds=60)


async def run_until(forwarder: Forwarder, outbox: FakeOutbox, done) -> None:
    await forwarder.start()
    try:
        async with asyncio.timeout(10):
            while not done():
                outbox.changed.clear()
                await outbox.changed.wait()
    finally:
        await forwarder.stop()


async def test_a_failure_resumes_after_what_was_delivered_in_order() -> None:
    # Two items of three notifications, two a request: the second request fails once.
    clock = Clock()
    outbox = FakeOutbox([item(1, ["d1", "d2", "d1"]), item(2, ["d2", "d1", "d2"])], clock)
    channel = FakeChannel(failures=0)
    calls = 0

    async def flaky(action: Action, deliveries: Sequence[Delivery]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise DeliveryFailed("a timeout")
        channel.received.extend(deliveries)

    channel.deliver = flaky  # type: ignore[method-assign]
    forwarder = Forwarder(FakeRules(rule()), outbox, {"FAKE": channel}, SETTINGS, clock=clock)

    def retried() -> bool:
        if outbox.retries:
            clock.now += 10_000  # the back-off has passed
        return not outbox.items

    await run_until(forwarder, outbox, retried)
    # The first request (item 1's first two) was delivered; item 1 resumed at its third notification.
    assert outbox.retries == [(1, 1_000_000 + 1000, 2)]
    values = [int(d.payload.split(b'"v":')[1].split(b"}")[0]) for d in channel.received]
    assert values == [10, 11, 12, 20, 21, 22]  # each once, in order
    assert [d.message_id for d in channel.received][:2] == ["a1-1-0", "a1-1-1"]


async def test_dead_lettered_after_its_attempts_with_back_off() -> None:
    clock = Clock()
    outbox = FakeOutbox([item(1, ["d1"])], clock)
    channel = FakeChannel(failures=100)
    forwarder = Forwarder(FakeRules(rule()), outbox, {"FAKE": channel}, SETTINGS, clock=clock)

    def advanced() -> bool:
        clock.now += 60_000
        return bool(outbox.dead)

    await run_until(forwarder, outbox, advanced)
    assert [(i.id, reason) for i, reason in outbox.dead] == [(1, "attempts")]
    assert channel.calls == SETTINGS.max_attempts
    assert outbox.delays == [1000, 2000]  # from 1 s, doubling (up to 4 s)


async def test_where_leaves_out_what_does_not_match() -> None:
    outbox = FakeOutbox([item(1, ["d1", "d2", "d1", "d2"])], Clock())
    channel = FakeChannel(failures=0)
    where = "notify_data.header.device_id = 'd2'"
    forwarder = Forwarder(FakeRules(rule(where)), outbox, {"FAKE": channel}, SETTINGS, clock=Clock())
    await run_until(forwarder, outbox, lambda: not outbox.items)
    assert [d.device_id for d in channel.received] == ["d2", "d2"]


def test_a_worker_keeping_pace_waits_before_its_next_claim_one_behind_does_not() -> None:
    clock = Clock()
    settings = ForwardingSettings(workers_per_action=1, batch=4, gather_seconds=0.1)
    forwarder = Forwarder(FakeRules(rule()), FakeOutbox([], clock), {}, settings, clock=clock)

    def lane(count: int, age_ms: int) -> Lane:
        made = [OutboxItem(n, "a1", 0, "device.property", "report", [], clock.now - age_ms) for n in range(count)]
        return Lane("a1", 0, tuple(made))

    assert forwarder._keeping_pace(lane(2, 50))  # noqa: SLF001  taken to its end, rows younger than 100 ms
    assert not forwarder._keeping_pace(lane(4, 50))  # noqa: SLF001  a full claim: more may wait
    assert not forwarder._keeping_pace(lane(2, 150))  # noqa: SLF001  behind: the next claim at once
    assert not Forwarder(FakeRules(rule()), FakeOutbox([], clock), {}, ForwardingSettings(batch=4),
                         clock=clock)._keeping_pace(lane(2, 50))  # noqa: SLF001  gather 0: never waits
