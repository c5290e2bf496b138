"""Authentication back-off by source address, in bounded memory.

``failures`` authentication failures from one address within ``block_seconds``
of the first of them block that address for ``block_seconds``: every attempt
in that time is refused before any credential is looked up. Entries expire
lazily (checked when read, swept when the dict is full); past ``capacity``
addresses the oldest are dropped. No task, no timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fleetgate.core.buckets import DEFAULT_CAPACITY


class FailureBackoff:
    __slots__ = ("failures", "block_seconds", "_capacity", "_clock", "_counts", "_blocked")

    def __init__(
        self, failures: int, block_seconds: float, *, capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or block_seconds <= 0:
            raise ValueError("back-off needs at least one failure and a positive block time")
        self.failures, self.block_seconds = failures, block_seconds
        self._capacity = capacity
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}  # address -> (failures, first failure at)
        self._blocked: dict[str, float] = {}  # address -> blocked until

    def __len__(self) -> int:
        return len(self._counts) + len(self._blocked)

    def blocked_for(self, address: str) -> float:
        """Seconds ``address`` stays blocked; 0.0 when it is not (the common case costs one dict test)."""
        if not self._blocked:
            return 0.0
        until = self._blocked.get(address)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._blocked[address]
            return 0.0
        return left

    def failed(self, address: str) -> None:
        now = self._clock()
        count, since = self._counts.get(address, (0, now))
        if now - since >= self.block_seconds:
            count, since = 0, now
        count += 1
        if count >= self.failures:
            self._counts.pop(address, None)
            self._sweep(self._blocked, now, lambda until: until <= now)
            self._blocked[address] = now + self.block_seconds
            return
        if address not in self._counts:
            self._sweep(self._counts, now, lambda entry: now - entry[1] >= self.block_seconds)
        self._counts[address] = (count, since)

    def _sweep(self, entries: dict, now: float, expired: Callable) -> None:
        if len(entries) < self._capacity:
            return
        for key, value in list(entries.items()):
            if expired(value):
                del entries[key]
        if len(entries) >= self._capacity:
            for key in list(entries)[: max(1, self._capacity // 10)]:
                del entries[key]
