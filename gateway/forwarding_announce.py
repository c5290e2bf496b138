"""Telling a forwarder in another process that outbox rows were committed, without a NOTIFY a commit.

A process that writes outbox rows for an action it has no worker for (``serve`` with
``forwarding_workers_per_action`` 0, or its delivery in a forwarder process of its own) announces
them on the channel the forwarders listen on: after the commit, never in the writing transaction
(a NOTIFY there takes a database-wide lock at commit), and at most once per ``every`` seconds. The
first commit after a quiet spell is announced at once; those that follow within the window are
coalesced into one announcement at its end. Nothing waits on a timer unless an announcement is due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from fleetgate.core.errors import GatewayError
from fleetgate.core.tasks import OwnedTasks

log = logging.getLogger(__name__)


class Announcer:
    def __init__(
        self, announce: Callable[[], Awaitable[None]], every: float, delivers: Callable[[str], bool],
    ) -> None:
        """``announce``: one notification to the forwarders (storage: pg_notify on a pool connection);
        ``delivers``: whether this process has workers for an action (Forwarder.delivers)."""
        self._announce = announce
        self._delivers = delivers
        self._every = every
        self._last = float("-inf")  # loop time of the last announcement
        self._due = False  # an announcement is scheduled: commits until it is sent go with it
        self._tasks = OwnedTasks()
        self.sent = 0

    @property
    def due(self) -> bool:
        return self._due

    def committed(self, action_ids: Sequence[str]) -> None:
        """Rows were committed for these actions: announced unless this process delivers them all."""
        if self._due or all(self._delivers(a) for a in action_ids):
            return
        self._due = True
        delay = self._last + self._every - asyncio.get_running_loop().time()
        self._tasks.spawn(self._send(delay))

    async def _send(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)  # the end of the window: one announcement for what it gathered
        # Cleared before the statement: a commit from here on is not sure to be covered by it.
        self._due = False
        self._last = asyncio.get_running_loop().time()
        try:
            await self._announce()
            self.sent += 1
        except GatewayError as exc:
            # The forwarders look again on their own (their idle check, or their LISTEN reconnecting).
            log.debug("forwarding announcement not sent: %s", exc)

    async def close(self) -> None:
        """An announcement still due is sent now, not dropped: the rows it tells of are committed."""
        due = self._due
        await self._tasks.finish()
        if due:
            self._due = False
            try:
                await self._announce()
                self.sent += 1
            except GatewayError as exc:
                log.debug("forwarding announcement not sent: %s", exc)
