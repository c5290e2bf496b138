"""The downlink bus over NATS: an event goes only to the processes holding its device.

Each process subscribes to one subject per device it holds (``{prefix}.d.{device}``), from
the device's first channel to its last, and to one subject of its own (``{prefix}.p.{id}``),
the reply address it stamps on what it publishes (``"o"``), and to one subject all share
(``{prefix}.all``) for the few events naming many devices (``"ds"``: an OTA package assigned to a
product). An event answering another
(an RPC's "delivered" receipt, the device's reply) names that address (``"a"``) and goes
there alone: request-reply, not broadcast. The cost of a downlink message does not grow
with the number of processes.

nats-py reconnects by itself (to any server of the list, or one the cluster announced) and
subscribes again; a server lost from a cluster costs the processes on it one reconnection.
While no server can be reached, publishing fails at once (Unavailable: the API's 503)
after a short grace for a reconnection under way, so no downlink call waits long on it;
uplink does not go through the bus. Imported only when ``nats_url`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from fleetgate.core import metrics
from fleetgate.core.errors import Unavailable
from fleetgate.core.retry import Backoff, Outage
from fleetgate.core.tasks import OwnedTasks

log = logging.getLogger(__name__)

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")
# How long a publish waits for a reconnection under way (a cluster node lost) before failing.
_RECONNECT_GRACE = 1.0


@dataclass(frozen=True, slots=True)
class NatsSettings:
    servers: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    credentials_file: str | None = None  # a .creds file (JWT and NKey seed)
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    subject_prefix: str = "fleetgate"
    reconnect_wait: float = 0.5
    connect_timeout: float = 2.0

    @classmethod
    def parse_servers(cls, urls: str) -> tuple[str, ...]:
        return tuple(url.strip() for url in urls.split(",") if url.strip())

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca_file or self.tls_cert_file or any(u.startswith("tls://") for u in self.servers)):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file)
        if self.tls_cert_file:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context


def device_subject(prefix: str, device_id: str) -> str:
    """A device's subject; an id that is not a plain subject token is spelled in hex."""
    if _PLAIN_ID.fullmatch(device_id):
        return f"{prefix}.d.{device_id}"
    return f"{prefix}.dx.{device_id.encode().hex()}"


class NatsDownlinkBus:
    def __init__(self, settings: NatsSettings) -> None:
        self._settings = settings
        self.receiver: Callable[[dict[str, Any]], None] | None = None
        self.address = f"{settings.subject_prefix}.p.{secrets.token_hex(8)}"
        self._client: Client | None = None  # once the first connection is made
        self._connecting: Client | None = None  # until then
        self._connected = asyncio.Event()
        self._wanted: set[str] = set()  # devices held here
        self._subscriptions: dict[str, Any] = {}  # device -> nats Subscription
        self._changed: dict[str, None] = {}  # devices whose subscription is to follow _wanted, in order
        self._wake = asyncio.Event()
        self._followed = asyncio.Event()  # set while the subscriptions follow _wanted
        self._tasks = OwnedTasks()
        self._stopping = False

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def start(self) -> None:
        """Connect; when no server answers within connect_timeout, go on connecting in the
        background (the gateway starts and takes uplink meanwhile; downlink calls are 503)."""
        metrics.DOWNLINK_BUS_CONNECTED.set(0)
        self._tasks.spawn(self._follow_subscriptions())
        connecting = self._tasks.spawn(self._connect())
        try:
            async with asyncio.timeout(self._settings.connect_timeout):
                await asyncio.shield(connecting)
        except TimeoutError:
            log.warning("NATS %s cannot be reached yet, connecting in the background: downlink calls are 503 "
                        "until then", ",".join(self._settings.servers))

    async def stop(self) -> None:
        self._stopping = True  # the connection closed now is no outage
        await self._tasks.finish()
        for client in (self._client, self._connecting):
            if client is not None and not client.is_closed:
                await client.close()
        self._client = self._connecting = None

    async def _connect(self) -> None:
        """The first connection. nats-py tries the servers in turn until one answers (it is
        told to try for ever, as for a reconnection); other failures are retried here."""
        s = self._settings
        options: dict[str, Any] = {}
        if s.user is not None:
            options.update(user=s.user, password=s.password)
        if s.token is not None:
            options["token"] = s.token
        if s.credentials_file is not None:
            options["user_credentials"] = s.credentials_file
        outage, backoff = Outage(log), Backoff(s.reconnect_wait, 5.0, jitter=0.2)
        while True:
            client = self._connecting = nats.NATS()
            try:
                await client.connect(
                    list(s.servers), name=self.address, tls=s.tls_context(), allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=s.reconnect_wait,
                    connect_timeout=s.connect_timeout, disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected, error_cb=self._error, **options,
                )
                await client.subscribe(self.address, cb=self._message)
                await client.subscribe(f"{s.subject_prefix}.all", cb=self._message)
                break
            except (OSError, NatsError, TimeoutError) as exc:
                outage.failed("NATS %s: cannot connect, retrying: %s", ",".join(s.servers),
                              exc or type(exc).__name__)
                if not client.is_closed:
                    await client.close()
                await asyncio.sleep(backoff.next())
        outage.recovered("NATS connected")
        self._client, self._connecting = client, None
        self._set_connected(True)
        # Whatever was attached before the first connection is subscribed now.
        self._changed.update(dict.fromkeys(self._wanted))
        self._followed.clear()
        self._wake.set()

    async def _disconnected(self) -> None:
        if not self._stopping:
            self._set_connected(False)

    async def _reconnected(self) -> None:
        self._set_connected(True)

    async def _error(self, exc: Exception) -> None:
        log.debug("NATS: %s", exc)

    def _set_connected(self, up: bool) -> None:
        metrics.DOWNLINK_BUS_CONNECTED.set(1 if up else 0)
        if up:
            if not self._connected.is_set():
                log.info("NATS connected: downlink available")
            self._connected.set()
        else:
            if self._connected.is_set():
                log.warning("NATS connection lost, reconnecting: downlink calls are 503 until it is back")
            self._connected.clear()

    # subscriptions: one per device held here

    def subscribe(self, device_id: str) -> None:
        self._wanted.add(device_id)
        self._change(device_id)

    def unsubscribe(self, device_id: str) -> None:
        self._wanted.discard(device_id)
        self._change(device_id)

    def _change(self, device_id: str) -> None:
        self._changed[device_id] = None
        self._followed.clear()
        self._wake.set()

    async def until_connected(self) -> None:
        await self._connected.wait()

    async def flush(self) -> None:
        """Return once the server has every subscription change made so far."""
        await self._connected.wait()
        await self._followed.wait()
        assert self._client is not None
        await self._client.flush()

    async def _follow_subscriptions(self) -> None:
        """Make the server's subscriptions follow the devices held, in the order they changed.
        nats-py only buffers a SUB or UNSUB, and sends them again after a reconnection."""
        outage = Outage(log)
        while True:
            await self._wake.wait()
            self._wake.clear()
            client = self._client
            if client is None:
                continue  # the first connection subscribes everything wanted
            while self._changed:
                device_id = next(iter(self._changed))
                del self._changed[device_id]
                wanted, subscription = device_id in self._wanted, self._subscriptions.get(device_id)
                try:
                    if wanted and subscription is None:
                        self._subscriptions[device_id] = await client.subscribe(
                            device_subject(self._settings.subject_prefix, device_id), cb=self._message)
                    elif not wanted and subscription is not None:
                        del self._subscriptions[device_id]
                        await subscription.unsubscribe()
                except NatsError as exc:  # the client buffers while reconnecting: a full buffer
                    outage.failed("NATS subscription not changed, retrying: %s", exc)
                    self._changed[device_id] = None
                    await asyncio.sleep(self._settings.reconnect_wait)
                else:
                    outage.recovered("NATS subscriptions followed again")
            self._followed.set()

    # events

    async def publish(self, event: dict[str, Any]) -> None:
        address = event.get("a")
        if isinstance(address, str) and address.startswith(f"{self._settings.subject_prefix}.p."):
            subject = address
        elif "ds" in event:
            subject = f"{self._settings.subject_prefix}.all"
        else:
            subject = device_subject(self._settings.subject_prefix, str(event["d"]))
            event = {**event, "o": self.address}
        client = self._client
        if client is None or not client.is_connected:
            try:
                async with asyncio.timeout(_RECONNECT_GRACE):
                    await self._connected.wait()
            except TimeoutError:
                raise Unavailable("The downlink bus (NATS) is unavailable") from None
            client = self._client
            if client is None:
                raise Unavailable("The downlink bus (NATS) is unavailable")
        try:
            await client.publish(subject, orjson.dumps(event))
        except NatsError as exc:
            raise Unavailable(f"The downlink bus (NATS) did not take the event: {exc}") from None

    async def _message(self, msg: Msg) -> None:
        if self.receiver is None:
            return
        try:
            event = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            log.warning("a malformed downlink message was dropped (subject %s)", msg.subject)
            return
        if isinstance(event, dict):
            self.receiver(event)
