"""A session's clock: the CONNECT deadline, then keep-alive (MQTT-3.1.2-24: a client silent for
1.5 times its interval is disconnected). One timer a connection, moved only when it fires, so a
packet costs a clock read and no timer work."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class KeepAlive:
    __slots__ = ("_expired", "_held", "_limit", "_loop", "_timer", "active_at")

    def __init__(self, connect_timeout: float, expired: Callable[[], None], held: Callable[[], bool]) -> None:
        """``expired``: called when CONNECT did not come in time, or the client went quiet;
        ``held``: whether the session has stopped reading (its silence is then the gateway's)."""
        self._loop = asyncio.get_running_loop()
        self._expired = expired
        self._held = held
        self._limit = 0.0  # 0 until CONNECT is accepted: the timer is the CONNECT deadline
        self.active_at = self._loop.time()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(connect_timeout, self._check)

    def packet(self) -> None:
        """A whole packet arrived: bytes dribbled into one do not keep the connection alive."""
        self.active_at = self._loop.time()

    def start(self, keep_alive: int) -> None:
        """CONNECT accepted: from now on the client's own interval (0: no keep-alive)."""
        self.cancel()
        if keep_alive:
            self._limit = keep_alive * 1.5
            self._timer = self._loop.call_later(self._limit, self._check)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if not self._limit:
            self._expired()
            return
        if self._held():
            self.active_at = self._loop.time()
        quiet = self._loop.time() - self.active_at
        if quiet >= self._limit:
            self._expired()
            return
        self._timer = self._loop.call_later(self._limit - quiet, self._check)
