"""Devices between two connections: a server-side call held for the next one.

An HTTP device takes server-side RPC by long polls: once a poll is answered (with a call, or 408
when its timeout passes) the device is connected nowhere until it polls again, a moment later.
ThingsBoard keeps a lightweight call made meanwhile pending in the device's actor and hands it to
the next RPC subscription (an HTTP poll takes one); here the process that held the device keeps
the call for a short grace (``http_rpc_poll_grace_seconds``) and delivers it when the device
attaches again. A persistent call needs none of this: it is stored until the device listens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

# Calls held for one device at once: more are refused as if the device were not connected.
MAX_HELD = 16


class Lingering:
    """The devices of this process whose last channel went a moment ago with a grace, and the
    RPC requests (bus events) held for them; ``over`` is told of a device whose grace ran out."""

    def __init__(self, over: Callable[[str], None]) -> None:
        self._over = over
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._held: dict[str, list[dict[str, Any]]] = {}

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._timers

    def start(self, device_id: str, grace: float) -> None:
        """The device's last channel went: it is expected back within ``grace`` seconds."""
        old = self._timers.pop(device_id, None)
        if old is not None:
            old.cancel()
        self._timers[device_id] = asyncio.get_running_loop().call_later(grace, self._expired, device_id)

    def hold(self, event: dict[str, Any]) -> float | None:
        """Keep an RPC request (a bus event) for the device's return: the seconds left to come back,
        or None when the device is not expected back or has as many held as it may."""
        device_id = event["d"]
        timer = self._timers.get(device_id)
        if timer is None:
            return None
        held = self._held.setdefault(device_id, [])
        if not any(e["i"] == event["i"] for e in held):  # a request published twice is held once
            if len(held) >= MAX_HELD:
                return None
            held.append(event)
        return max(0.0, timer.when() - asyncio.get_running_loop().time())

    def forget(self, device_id: str, request_id: object) -> None:
        """A request held here reached the device through another process."""
        held = self._held.get(device_id)
        if held:
            held[:] = [e for e in held if e["i"] != request_id]

    def back(self, device_id: str) -> list[dict[str, Any]]:
        """The device attached again: the requests held for it, oldest first, to deliver now."""
        timer = self._timers.pop(device_id, None)
        if timer is not None:
            timer.cancel()
        return self._held.pop(device_id, [])

    def _expired(self, device_id: str) -> None:
        del self._timers[device_id]
        self._held.pop(device_id, None)  # their callers are told the device is not connected
        self._over(device_id)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._held.clear()
