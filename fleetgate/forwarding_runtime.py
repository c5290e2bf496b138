"""Data forwarding, wired: the rule and outbox stores, the channels, the forwarder's workers and the
LISTEN connection that tells this process of other processes' rule changes and device events.

Started before the ingest pipeline (the telemetry writer needs to know which projects forward
their data) and stopped after it has drained (what it committed is in the outbox)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import asyncpg

from fleetgate.channel_http import HttpChannel
from fleetgate.channel_nats import NatsChannel
from fleetgate.config import Settings
from fleetgate.core.forwarding import Forwarder, ForwardingSettings
from fleetgate.core.forwarding_announce import Announcer
from fleetgate.core.forwarding_model import Channel
from fleetgate.core.forwarding_rules import RuleService
from fleetgate.storage.forwarding import CHANNEL, ForwardingStore
from fleetgate.storage.forwarding_outbox import TelemetryOutbox
from fleetgate.storage.listening import ListeningConnection
from fleetgate.storage.sealing import Sealer, load_key


def channels() -> dict[str, Channel]:
    """Every channel an action may use: a new one (Kafka) is one more module, added here."""
    return {channel.name: channel for channel in (HttpChannel(), NatsChannel())}


def forwarding_settings(s: Settings) -> ForwardingSettings:
    # With forwarding_process, a forwarder process of its own delivers and watches the backlog.
    delivers = not s.forwarding_process
    return ForwardingSettings(
        workers_per_action=s.forwarding_workers_per_action if delivers else 0, watch=delivers,
        lease_seconds=s.forwarding_lease_seconds,
        retry_max_seconds=s.forwarding_retry_max_seconds, max_attempts=s.forwarding_max_attempts,
        max_age_seconds=s.forwarding_max_age_seconds, backlog_max=s.forwarding_backlog_max,
        gather_seconds=s.forwarding_gather_ms / 1000,
    )


class ForwardingRuntime:
    def __init__(self, settings: Settings, url: str, pool: asyncpg.Pool) -> None:
        # The key open_services loaded (made at the first start): actions' secrets are sealed with it.
        key_file = settings.secrets_key_file or os.path.join(settings.data_dir, "secrets.key")
        self.store = ForwardingStore(pool, Sealer(load_key(key_file)))
        self.channels = channels()
        self.outbox = TelemetryOutbox(on_committed=self._committed)
        self.forwarder = Forwarder(self.store, self.store, self.channels, forwarding_settings(settings),
                                   on_routes=self._follow)
        # Rows for actions no worker here delivers: the forwarders elsewhere are told, coalesced.
        self.announcer = Announcer(self.store.announce, settings.forwarding_gather_ms / 1000, self.forwarder.delivers)
        self.rules = RuleService(self.store, self.store, self.channels, on_change=self.forwarder.reload)
        self._listener = ListeningConnection(url, CHANNEL, self.forwarder.notified, on_connect=self._connected,
                                             retry_max=settings.db_retry_max_seconds)

    async def start(self) -> None:
        await self._listener.start()
        await self.forwarder.start()

    async def stop(self) -> None:
        await self.announcer.close()
        await self._listener.stop()
        await self.forwarder.stop()

    def _committed(self, action_ids: Sequence[str]) -> None:
        self.forwarder.wake(action_ids)
        self.announcer.committed(action_ids)

    async def _follow(self) -> None:
        self.outbox.follow(await self.store.property_actions())

    async def _connected(self, _conn: asyncpg.Connection) -> None:
        # Notifications sent while not listening are lost: look again at the rules and the outbox.
        self.forwarder.notified("rules")
