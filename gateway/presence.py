"""Device connectivity: ThingsBoard's "active" state, IoTDA's ONLINE/OFFLINE status.

A device is ONLINE while it holds a connection (an MQTT session, a CoAP observation, a
sub-device behind its connected gateway), and for the inactivity timeout after each
request it makes without one (HTTP, CoAP). The hot path only notes what happened, in
memory; one task writes it all every ``flush_seconds`` in one batch, so a message costs
no database write.

Connections are held by processes, and each process renews a lease of its own at every
write. A process that dies (SIGKILL, a lost machine) stops renewing, and its devices fall
OFFLINE when its lease runs out, with no one having to notice: status is decided when it
is read (``gateway_processes.lease_until > now``), and the next write of any process
clears what the dead one left. A process that stops cleanly ends its connections at once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from fleetgate.core import metrics
from fleetgate.core.clock import SYSTEM_CLOCK, Clock
from fleetgate.core.errors import GatewayError
from fleetgate.core.ports import PresenceStore
from fleetgate.core.presence_model import PresenceBatch
from fleetgate.core.retry import Outage
from fleetgate.core.tasks import OwnedTasks

log = logging.getLogger(__name__)
T = TypeVar("T")

# A process's lease outlives this many of its writes: one or two late writes (a slow
# database, a long pause) do not turn its devices OFFLINE.
LEASE_WRITES = 5
# On these, a device is online for the inactivity timeout after each request, so a
# connection it closes (a CoAP observation) counts as its last request.
REQUEST_PROTOCOLS = frozenset({"http", "coap"})


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    inactivity_timeout_ms: int
    flush_seconds: float

    @property
    def lease_ms(self) -> int:
        return round(self.flush_seconds * 1000 * LEASE_WRITES)

    @property
    def activity_ms(self) -> int:
        """How often one device's activity is written at most: a tenth of the inactivity timeout.
        Writing every active device at every write cost the HTTP bench a sixth of its rate with
        1,000 devices (one UPDATE of each row every 2 s). A request lease is renewed once it has
        less than the timeout less this left, so it never ends early and at most this much late;
        a device's first request after being offline is written at the next write."""
        return self.inactivity_timeout_ms // 10


class Presence:
    """This process's view: ``connected``/``disconnected`` for each channel a device opens and
    closes (counted: a device may hold several), ``active`` for each message or request. All
    three are synchronous dict and set updates; :meth:`flush` writes them, every
    ``flush_seconds`` once started."""

    def __init__(
        self, store: PresenceStore, settings: PresenceSettings, *, clock: Clock = SYSTEM_CLOCK,
        process_id: str | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self.process_id = process_id or secrets.token_hex(12)
        self._channels: dict[tuple[str, str], int] = {}  # (device, protocol) -> channels open here
        self._connected: dict[str, int] = {}  # device -> channels open here, any protocol
        self._by_protocol: dict[str, int] = {}  # protocol -> devices with a channel of it here
        # What the next write carries.
        self._opened: dict[str, int] = {}  # device -> when its first channel here opened
        self._closed: dict[str, int] = {}  # device -> when its last channel here closed
        self._released: set[str] = set()
        self._seen: set[str] = set()
        self._requests: dict[str, str | None] = {}  # device -> the protocol of its request, if known
        # protocol -> device -> until when it is online by its requests here (for the gauge);
        # in the order the leases end, so expired ones are found at the front.
        self._leases: dict[str, dict[str, int]] = {}
        # What the writes so far said, to write a device's activity at most every activity_ms:
        self._seen_written: dict[str, int] = {}  # device -> when its activity on a connection was written
        self._lease_written: dict[str, int] = {}  # device -> the request lease written for it
        self._writing = asyncio.Lock()
        self._leased = False  # whether a write has taken this process's lease yet
        self._tasks = OwnedTasks()

    # the hot path: synchronous and in memory

    def connected(self, device_id: str, protocol: str) -> None:
        key = (device_id, protocol)
        count = self._channels.get(key, 0)
        self._channels[key] = count + 1
        if not count:
            self._by_protocol[protocol] = self._by_protocol.get(protocol, 0) + 1
        total = self._connected.get(device_id, 0)
        self._connected[device_id] = total + 1
        if not total:
            # A channel closed and opened again before the write: its row was never removed.
            if self._closed.pop(device_id, None) is None:
                self._opened[device_id] = self._clock.now_ms()
            self._released.discard(device_id)

    def disconnected(self, device_id: str, protocol: str) -> None:
        key = (device_id, protocol)
        count = self._channels.get(key, 0)
        if not count:
            return
        if count > 1:
            self._channels[key] = count - 1
        else:
            del self._channels[key]
            self._by_protocol[protocol] -= 1
        total = self._connected[device_id] - 1
        if total:
            self._connected[device_id] = total
            return
        del self._connected[device_id]
        self._lease_written.pop(device_id, None)  # the disconnect ends its request lease too
        if protocol in REQUEST_PROTOCOLS:
            self._released.add(device_id)
            self._requests[device_id] = protocol
        elif self._opened.pop(device_id, None) is None:
            self._closed[device_id] = self._clock.now_ms()
        # else: opened and closed between two writes: nothing was written, nothing to undo

    def active(self, device_id: str, protocol: str | None = None) -> None:
        """The device did something: on a connection held here, or by a request."""
        if device_id in self._connected:
            self._seen.add(device_id)
        elif protocol is not None:
            self._requests[device_id] = protocol
        else:
            self._requests.setdefault(device_id, None)

    # the gauge

    def online(self, protocol: str) -> int:
        """Devices online here by ``protocol``: with a channel of it open, or within the
        inactivity timeout of a request over it."""
        leases = self._leases.get(protocol, {})
        _expire(leases, self._clock.now_ms())
        return self._by_protocol.get(protocol, 0) + len(leases)

    def sample(self, protocols: Iterable[str]) -> None:
        """Report :meth:`online` as the devices-online gauge, for each of ``protocols``."""
        for protocol in protocols:
            metrics.sample(metrics.DEVICES_ONLINE.labels(protocol), lambda p=protocol: self.online(p))

    # writing

    def start(self) -> None:
        self._tasks.spawn(self._every_interval())

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is pending and end this process's connections (call once the front-ends
        have closed theirs); a database that does not answer within ``timeout`` leaves that
        to the lease."""
        await self._tasks.finish()
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
                await self._store.end_process(self.process_id, self._clock.now_ms())
        except (GatewayError, TimeoutError) as exc:
            log.warning("device connectivity not written at stop, left to the lease: %r", exc)
        except Exception:
            log.exception("device connectivity not written at stop, left to the lease")

    async def flush(self) -> None:
        """Write what happened since the last write, and renew this process's lease."""
        async with self._writing:
            now = self._clock.now_ms()
            s = self._settings
            renew_before = now + s.inactivity_timeout_ms - s.activity_ms
            requests, self._requests = _split(self._requests, lambda d: self._lease_written.get(d, 0) <= renew_before)
            seen, kept = _split(dict.fromkeys(self._seen), lambda d: self._seen_written.get(d, 0) <= now - s.activity_ms)
            self._seen = set(kept)
            batch = self._take(now, requests, seen)
            try:
                renewed = await self._store.write_presence(batch)
            except BaseException:
                self._give_back(batch, requests)
                raise
            self._lease_written = {d: until for d, until in self._lease_written.items() if until > now}
            self._lease_written.update(dict.fromkeys(requests, batch.online_until))
            self._seen_written = {d: at for d, at in self._seen_written.items() if at > now - s.activity_ms}
            self._seen_written.update(dict.fromkeys(seen, now))
            if not renewed and self._leased:
                # The lease lapsed (a long pause) and another process ended these connections.
                for device_id in self._connected:
                    self._opened.setdefault(device_id, now)
            self._leased = True
            for device_id, protocol in requests.items():
                if protocol is not None:
                    leases = self._leases.setdefault(protocol, {})
                    leases.pop(device_id, None)  # to the back: the lease ending last
                    leases[device_id] = batch.online_until
            for leases in self._leases.values():
                _expire(leases, now)

    def _take(self, now: int, requests: dict[str, str | None], seen: dict[str, None]) -> PresenceBatch:
        s = self._settings
        batch = PresenceBatch(
            self.process_id, now, now + s.lease_ms,
            opened=tuple(self._opened.items()), seen=tuple(seen), requests=tuple(requests),
            online_until=now + s.inactivity_timeout_ms, released=tuple(self._released),
            closed=tuple(self._closed.items()),
        )
        self._opened, self._closed, self._released = {}, {}, set()
        return batch

    def _give_back(self, batch: PresenceBatch, requests: dict[str, str | None]) -> None:
        """A write failed: what it carried goes into the next one, as far as it still holds."""
        for device_id, since in batch.opened:
            if device_id in self._connected:
                self._opened.setdefault(device_id, since)
        for device_id, when in batch.closed:
            if device_id not in self._connected:
                self._closed.setdefault(device_id, when)
        self._released.update(d for d in batch.released if d not in self._connected)
        self._seen.update(batch.seen)
        for device_id, protocol in requests.items():
            self._requests.setdefault(device_id, protocol)

    async def _every_interval(self) -> None:
        # A database outage is one warning and, once it ends, one summary: not a line every write.
        outage = Outage(log)
        while True:
            await asyncio.sleep(self._settings.flush_seconds)
            try:
                await self.flush()
            except GatewayError as exc:
                outage.failed("device connectivity not written, retried at each write: %s", exc.message)
                continue
            except Exception:
                # Whatever it was, the next write tries again: a stopped task would let the lease lapse.
                log.exception("device connectivity not written this time, retried at the next write")
                continue
            outage.recovered("device connectivity written again")


def _split(pending: dict[str, T], due: Callable[[str], bool]) -> tuple[dict[str, T], dict[str, T]]:
    """The devices whose activity is written now, and those that wait (written lately)."""
    now: dict[str, T] = {}
    later: dict[str, T] = {}
    for device_id, value in pending.items():
        (now if due(device_id) else later)[device_id] = value
    return now, later


def _expire(leases: dict[str, int], now: int) -> None:
    """Drop the leases ended by ``now``: they are at the front."""
    while leases:
        device_id, until = next(iter(leases.items()))
        if until > now:
            return
        del leases[device_id]
