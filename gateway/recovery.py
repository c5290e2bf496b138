"""Waiting between attempts through a database outage, cut short when the database comes back.

A back-off alone makes recovery lag the database by up to a whole delay (about a second
with the default ceiling). With a probe (one connection attempt, refused in microseconds
while PostgreSQL is down), the wait is watched: once the probe has failed and then
succeeds, the database is back and the wait ends there. A probe that succeeds at once
(the database answers, but the write failed for another reason: a full disk, a dropped
partition) leaves the delay as it is, so that such failures are never retried in a tight loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Probe = Callable[[], Awaitable[None]]

# How often a database that refused the probe is tried again: a refused connection
# costs both sides next to nothing, and recovery lags the database by at most this.
PROBE_INTERVAL = 0.025


class Recovery:
    __slots__ = ("_probe", "_interval")

    def __init__(self, probe: Probe | None = None, interval: float = PROBE_INTERVAL) -> None:
        self._probe = probe
        self._interval = interval

    async def wait(self, delay: float) -> bool:
        """Wait ``delay`` seconds, or less: True when the database was seen to come back meanwhile."""
        if self._probe is None:
            await asyncio.sleep(delay)  # the back-off itself
            return False
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        refused = False
        while (left := until - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    await self._probe()
            except TimeoutError:
                if loop.time() >= until:
                    return False  # the probe hung (a frozen server) until the delay was out
                refused = True
            except Exception:
                refused = True
            else:
                if refused:
                    return True
                await asyncio.sleep(until - loop.time())  # reachable: the failure was something else
                return False
            await asyncio.sleep(min(self._interval, max(until - loop.time(), 0.0)))  # the probe's pace
        return False
