"""Retrying through an outage: the delays between attempts, and what is logged about it.

An expected outage (PostgreSQL restarting, a network cut) is logged as one warning
when it begins and one summary when it ends, never a traceback per attempt: a
log that repeats every few seconds for an hour hides the lines that matter.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable


class Backoff:
    """Exponential back-off: ``first``, then each delay ``factor`` times the one before, up to
    ``maximum``. With ``jitter`` (0 to 1) each delay is shortened by up to that fraction, at
    random, so that many clients cut off together do not come back together."""

    __slots__ = ("first", "maximum", "factor", "jitter", "_next", "_random")

    def __init__(
        self, first: float, maximum: float, *, factor: float = 2.0, jitter: float = 0.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < first <= maximum:
            raise ValueError("the first delay must be positive and at most the maximum")
        if factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("the factor must be at least 1 and the jitter between 0 and 1")
        self.first, self.maximum, self.factor, self.jitter = first, maximum, factor, jitter
        self._random = rng
        self._next = first

    def next(self) -> float:
        """The delay before the next attempt; the one after grows."""
        delay = self._next
        self._next = min(delay * self.factor, self.maximum)
        return delay * (1 - self.jitter * self._random()) if self.jitter else delay

    def reset(self) -> None:
        """After a success: the next delay is ``first`` again."""
        self._next = self.first


class Outage:
    """The log of one kind of outage: its first failure is a warning, the failures after it
    are debug records, and its end is one summary with how long it lasted."""

    __slots__ = ("_log", "_clock", "_since", "_failures")

    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self._since: float | None = None
        self._failures = 0

    def failed(self, message: str, *args: object) -> None:
        """One more failed attempt (``message`` % ``args``, no traceback)."""
        self._failures += 1
        if self._since is None:
            self._since = self._clock()
            self._log.warning(message, *args)
        else:
            self._log.debug(message, *args)

    def recovered(self, message: str, *args: object) -> None:
        """The outage is over, if there was one: ``message`` % ``args``, then how long it lasted."""
        if self._since is None:
            return
        self._log.info(message + " after %.1f s (%d failures)", *args, self._clock() - self._since,
                       self._failures)
        self._since, self._failures = None, 0
