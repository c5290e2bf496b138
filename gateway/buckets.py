"""Token buckets by key (a source address, a provision key), in bounded memory.

A bucket holds up to ``burst`` tokens and refills at ``rate`` a second; each
attempt takes one. Buckets are created on demand and forgotten once they are
full again (they would say nothing a new bucket would not), so the dict holds
only keys seen recently; past ``capacity`` keys the oldest are dropped, which
gives those keys a fresh bucket (fail open rather than grow without bound).
Nothing runs in the background: expiry happens when keys are added.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_CAPACITY = 100_000


class TokenBuckets:
    __slots__ = ("rate", "burst", "_capacity", "_clock", "_buckets")

    def __init__(
        self, rate: float, burst: int, *, capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate, self.burst = rate, burst
        self._capacity = capacity
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when there was one, else the seconds until there is."""
        now = self._clock()
        entry = self._buckets.get(key)
        if entry is None:
            self._make_room(now)
            tokens = float(self.burst)
        else:
            tokens = min(float(self.burst), entry[0] + (now - entry[1]) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self._capacity:
            return
        refill = self.burst / self.rate  # a bucket untouched this long is full again
        for key, (_, at) in list(self._buckets.items()):
            if now - at >= refill:
                del self._buckets[key]
        if len(self._buckets) >= self._capacity:
            for key in list(self._buckets)[: max(1, self._capacity // 10)]:
                del self._buckets[key]
