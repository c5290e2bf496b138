"""Device certificates as TLS trust anchors, reloaded whenever PostgreSQL says they changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from fleetgate.core import pki
from fleetgate.storage.device_cas import trusted_ca_pems
from fleetgate.storage.listening import ListeningConnection

log = logging.getLogger(__name__)
CHANNEL = "device_certificates"


async def device_certificates(pool: asyncpg.Pool | asyncpg.Connection) -> list[bytes]:
    """The trust anchors, DER: every X509_CERTIFICATE credential's certificate, and every
    verified device CA certificate."""
    records = await pool.fetch(
        "SELECT decode(certificate, 'base64') AS der FROM device_credentials"
        " WHERE type = 'X509_CERTIFICATE' AND certificate IS NOT NULL")
    return [r["der"] for r in records] + [pki.der(pki.stored_certificate(pem)) for pem in await trusted_ca_pems(pool)]


class CertificateWatch:
    """Calls ``on_change`` with the current certificates at start, after every change, and
    after every reconnection of its LISTEN connection (changes may have been missed)."""

    def __init__(self, url: str, on_change: Callable[[list[bytes]], None], retry_max: float = 5.0) -> None:
        self._on_change = on_change
        self._changed = asyncio.Event()
        self._listening = ListeningConnection(url, CHANNEL, lambda _: self._changed.set(), self._load, retry_max)
        self._querying = asyncio.Lock()  # one query at a time on the listening connection
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin watching; returns once the first load is done (or the first attempt failed)."""
        await self._listening.start()
        self._task = asyncio.create_task(self._reload_on_change(), name="certificate-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._listening.stop()

    async def _load(self, conn: asyncpg.Connection) -> None:
        async with self._querying:
            self._changed.clear()
            self._on_change(await device_certificates(conn))

    async def _reload_on_change(self) -> None:
        while True:
            await self._changed.wait()
            conn = self._listening.connection
            if conn is None:  # reconnecting: the reconnection reloads
                self._changed.clear()
                continue
            try:
                await self._load(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("certificate reload failed (the reconnection reloads): %s", exc)
