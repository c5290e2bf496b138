"""Waking a forwarder in another process (fleetgate.core.forwarding_announce) on in-memory fakes:
commits for actions no local worker delivers are announced at most once a window, the first at
once, the rest coalesced into one at the window's end; commits delivered here are not announced."""

from __future__ import annotations

import asyncio

from fleetgate.core.errors import Unavailable
from fleetgate.core.forwarding import Forwarder, ForwardingSettings
from fleetgate.core.forwarding_announce import Announcer
from tests.fakes_forwarding import Clock, FakeChannel, FakeOutbox, FakeRules, rule

WINDOW = 0.2


class Announcements:
    """The fake of the storage's pg_notify: when each was sent (loop time)."""

    def __init__(self, fail: int = 0) -> None:
        self.at: list[float] = []
        self.tried = 0
        self.fail = fail
        self._changed = asyncio.Condition()

    async def announce(self) -> None:
        async with self._changed:
            self.tried += 1
            self._changed.notify_all()
            if self.fail:
                self.fail -= 1
                raise Unavailable("the database is down")
            self.at.append(asyncio.get_running_loop().time())

    async def wait(self, count: int, tried: int = 0) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(self.at) >= count and self.tried >= tried)


def elsewhere(_action_id: str) -> bool:
    return False


async def test_a_burst_of_commits_is_one_announcement_now_and_one_at_the_window_end() -> None:
    sent = Announcements()
    announcer = Announcer(sent.announce, WINDOW, elsewhere)
    started = asyncio.get_running_loop().time()
    for _ in range(100):
        announcer.committed(["a1"])
        await asyncio.sleep(0)  # the commits of a busy ingest path, one after another
    await sent.wait(1)
    assert sent.at[0] - started < WINDOW  # the first after a quiet spell: at once
    for _ in range(100):
        announcer.committed(["a1"])
    await sent.wait(2)
    assert not announcer.due  # nothing more is scheduled: no timer runs without a commit
    assert len(sent.at) == 2 and sent.at[1] - sent.at[0] >= WINDOW * 0.99
    await announcer.close()
    assert len(sent.at) == 2


async def test_at_most_one_announcement_a_window_while_commits_keep_coming() -> None:
    sent = Announcements()
    announcer = Announcer(sent.announce, WINDOW, elsewhere)
    async with asyncio.timeout(5):
        while len(sent.at) < 4:
            announcer.committed(["a1"])
            await asyncio.sleep(0.01)  # a commit every 10 ms: twenty a window
    await announcer.close()
    gaps = [b - a for a, b in zip(sent.at, sent.at[1:])]
    assert len(sent.at) <= 5 and all(gap >= WINDOW * 0.99 for gap in gaps), gaps


async def test_commits_this_process_delivers_are_not_announced() -> None:
    # A forwarder with workers here for a1 (the default) delivers it: no announcement.
    outbox = FakeOutbox([], Clock())
    local = Forwarder(FakeRules(rule()), outbox, {"FAKE": FakeChannel(0)}, ForwardingSettings(workers_per_action=1))
    # One with none (forwarding_workers_per_action 0, or serve with forwarding_process): announced.
    remote = Forwarder(FakeRules(rule()), outbox, {"FAKE": FakeChannel(0)},
                       ForwardingSettings(workers_per_action=0, watch=False))
    await local.start()
    await remote.start()
    try:
        here, there = Announcements(), Announcements()
        for forwarder, sent in ((local, here), (remote, there)):
            announcer = Announcer(sent.announce, WINDOW, forwarder.delivers)
            announcer.committed(["a1"])
            announcer.committed(["a1", "unknown-action"])  # an action no worker here has: told
            await announcer.close()
        assert len(here.at) == 1 and len(there.at) == 1
        assert local.delivers("a1") and not remote.delivers("a1")
    finally:
        await local.stop()
        await remote.stop()


async def test_a_failed_announcement_does_not_stop_the_next() -> None:
    sent = Announcements(fail=1)
    announcer = Announcer(sent.announce, 0.01, elsewhere)
    announcer.committed(["a1"])  # the database is down: logged, dropped (the forwarders look on their own)
    await sent.wait(0, tried=1)
    assert not announcer.due
    announcer.committed(["a1"])
    await sent.wait(1)
    await announcer.close()
    assert sent.tried == 2


async def test_close_sends_an_announcement_still_due() -> None:
    sent = Announcements()
    announcer = Announcer(sent.announce, 60.0, elsewhere)
    announcer.committed(["a1"])
    await sent.wait(1)
    announcer.committed(["a1"])  # due at the end of a minute's window
    assert announcer.due
    await announcer.close()
    assert len(sent.at) == 2
