"""ThingsBoard's HTTP long polls: ``GET /api/v1/{token}/rpc`` waits for an operator's server-side
call, ``GET /api/v1/{token}/attributes/updates`` for a shared-attribute update.

A poll is a downlink channel (fleetgate.core.device_channel.DeviceChannel) attached, with protocol
"http", for as long as it waits, so the device counts as connected meanwhile. It is answered
through a future that the connection waits on with a callback: the downlink completes it with the
first request or update, a timer handle (``loop.call_later``) with 408 when its timeout passes,
and the connection abandons it when the client goes away. No task waits on a poll.

Polls open at once are bounded (``http_max_long_polls``): past the bound, 429 with Retry-After,
counted as a limit refusal.

Between two RPC polls the device is connected nowhere for a moment. As ThingsBoard keeps a call
pending for the device's next RPC subscription, an operator's lightweight call made then waits up
to ``http_rpc_poll_grace_seconds`` for the next poll, which it answers at once, rather than
failing with 409 (fleetgate.core.lingering).
"""

from __future__ import annotations

import asyncio
import enum
import math
from typing import Any

import orjson

from fleetgate.core import codec
from fleetgate.core.device_service import DeviceService
from fleetgate.core.errors import GatewayError, InvalidInput, TooManyRequests
from fleetgate.core.model import DeviceIdentity
from fleetgate.protocols.http.errors import refused
from fleetgate.protocols.http.wire import Reply

PROTOCOL = "http"
# ThingsBoard's transport.http.request_timeout (a poll without a timeout, or with 0) and
# transport.http.max_request_timeout (Tomcat's async timeout: no poll waits longer), in ms.
DEFAULT_TIMEOUT_MS = 60_000
MAX_TIMEOUT_MS = 300_000
# How long a device whose RPC poll was answered is waited for (ThingsBoard's SDK polls again at once).
DEFAULT_POLL_GRACE = 5.0
# ThingsBoard answers a poll that timed out with 408 and no body; the SDK polls again on it.
_TIMED_OUT = Reply(408)
_SHUTTING_DOWN = Reply.text(503, "The gateway is shutting down", (("Retry-After", "1"),))


class Feed(enum.Enum):
    """What a poll waits for."""

    RPC = "rpc"
    ATTRIBUTES = "attributes"


class TooManyLongPolls(TooManyRequests):
    """The gateway holds as many long polls as it may; poll again later."""


def poll_timeout(query: Any) -> float:
    """The poll's wait in seconds from its query (``{"timeout": "ms"}``): ThingsBoard's default when
    absent or 0, at most its maximum; InvalidInput for anything but a number of milliseconds >= 0."""
    raw = query.get("timeout") if isinstance(query, dict) else None
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_MS / 1000
    try:
        timeout_ms = float(raw)
    except ValueError:
        raise InvalidInput(f"timeout must be a number of milliseconds, not {raw!r}") from None
    if not math.isfinite(timeout_ms) or timeout_ms < 0:
        raise InvalidInput(f"timeout must be a number of milliseconds, 0 or more, not {raw!r}")
    if timeout_ms == 0:
        timeout_ms = DEFAULT_TIMEOUT_MS
    return min(timeout_ms, MAX_TIMEOUT_MS) / 1000


class LongPoll:
    """One open poll: a device channel until it is answered, times out or is abandoned."""

    __slots__ = ("_polls", "_timer", "device", "feed", "future")

    def __init__(self, polls: LongPolls, device: DeviceIdentity, feed: Feed, future: asyncio.Future[Reply]) -> None:
        self._polls = polls
        self.device = device
        self.feed = feed
        self.future = future
        self._timer: asyncio.TimerHandle | None = None

    # fleetgate.core.device_channel.DeviceChannel

    def push_attributes(self, update: dict[str, Any]) -> None:
        if self.feed is Feed.ATTRIBUTES:
            self.answer(Reply.json(orjson.dumps(update)))

    def push_rpc(self, request_id: int, method: str, params: Any) -> None:
        if self.feed is Feed.RPC:
            self.answer(Reply.json(orjson.dumps({"id": request_id, "method": method, "params": params})))

    def answer(self, reply: Reply) -> None:
        """Answer the poll (the first answer wins) and stop receiving."""
        if self._polls.end(self) and not self.future.done():
            self.future.set_result(reply)

    def timed_out(self) -> None:
        self._timer = None
        self.answer(_TIMED_OUT)

    def start(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._timer = loop.call_later(timeout, self.timed_out)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class LongPolls:
    """The long polls of a device API, at most ``max_polls`` at once."""

    def __init__(self, service: DeviceService, max_polls: int, grace: float = DEFAULT_POLL_GRACE) -> None:
        self._service = service
        self._max_polls = max_polls
        self._grace = grace
        self._open: dict[asyncio.Future[Reply], LongPoll] = {}

    def __len__(self) -> int:
        return len(self._open)

    def open(self, device: DeviceIdentity, feed: Feed, query: bytes) -> Reply | asyncio.Future[Reply]:
        """A poll for ``device``'s ``feed`` (``query``: the request's query in its JSON form): the
        future its answer comes through, or the refusal to send at once."""
        try:
            timeout = poll_timeout(codec.loads(query))
            if len(self._open) >= self._max_polls:
                raise TooManyLongPolls(f"The gateway holds {self._max_polls} long polls already; poll again later")
        except GatewayError as exc:
            return refused(exc)
        loop = asyncio.get_running_loop()
        poll = LongPoll(self, device, feed, loop.create_future())
        self._open[poll.future] = poll
        self._service.attach(device, poll, PROTOCOL)
        poll.start(loop, timeout)
        if feed is Feed.RPC:
            self._service.rpc_listening(device, poll)  # a persistent call waiting answers it
        return poll.future

    def end(self, poll: LongPoll) -> bool:
        """Detach ``poll`` if it is still open; whether it was."""
        if self._open.pop(poll.future, None) is None:
            return False
        poll.stop()
        linger = self._grace if poll.feed is Feed.RPC else 0.0
        self._service.detach(poll.device, poll, PROTOCOL, linger=linger)
        return True

    def abandon(self, future: asyncio.Future[Any]) -> None:
        """The client of ``future``'s poll went away (a future of no poll: nothing to do)."""
        poll = self._open.get(future)
        if poll is not None:
            self.end(poll)
            future.cancel()

    def close(self) -> None:
        """Answer every open poll now: the gateway is stopping."""
        for poll in list(self._open.values()):
            poll.answer(_SHUTTING_DOWN)
