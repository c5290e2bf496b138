"""Device certificates as TLS trust anchors, following PostgreSQL's announcements of changes.

The triggers (migration 0015) say what changed: a new X509_CERTIFICATE credential or a newly
verified device CA comes with its certificate, which is added to the trust store by itself,
nothing else read again; a removal or a change says only that, and the anchors are
read again and the store rebuilt, once for every change that arrived meanwhile. The two
kinds travel apart: a few device CAs, and credentials by the hundred thousand, which the
TLS side keeps differently (protocols.tls).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from typing import NamedTuple

import asyncpg

from fleetgate.core import pki
from fleetgate.storage.device_cas import trusted_ca_pems
from fleetgate.storage.listening import ListeningConnection

log = logging.getLogger(__name__)
CHANNEL = "device_certificates"
_CREDENTIAL, _CA = "+c:", "+a:"


class Anchors(NamedTuple):
    """Trust anchors, DER."""

    cas: list[bytes]  # verified device CAs' certificates
    credentials: list[bytes]  # X509_CERTIFICATE credentials' certificates


async def device_certificates(pool: asyncpg.Pool | asyncpg.Connection) -> Anchors:
    """The trust anchors: every verified device CA certificate, and every X509_CERTIFICATE
    credential's certificate."""
    records = await pool.fetch(
        "SELECT decode(certificate, 'base64') AS der FROM device_credentials"
        " WHERE type = 'X509_CERTIFICATE' AND certificate IS NOT NULL")
    return Anchors([pki.der(pki.stored_certificate(pem)) for pem in await trusted_ca_pems(pool)],
                   [r["der"] for r in records])


def announced(payload: str) -> Anchors | None:
    """The certificate a notification adds; None when it asks for a rebuild."""
    try:
        if payload.startswith(_CREDENTIAL):
            return Anchors([], [base64.b64decode(payload[len(_CREDENTIAL):], validate=True)])
        if payload.startswith(_CA):
            return Anchors([pki.der(pki.stored_certificate(payload[len(_CA):]))], [])
    except (binascii.Error, ValueError) as exc:
        log.warning("a trust-store notification did not parse, rebuilding instead: %s", exc)
    return None


class CertificateWatch:
    """Calls ``on_change`` with every device CA and credential certificate at start, after a
    removal or change (once for all that arrived meanwhile) and after every reconnection of its
    LISTEN connection (changes may have been missed); ``on_add`` with those added since,
    otherwise."""

    def __init__(
        self, url: str, on_change: Callable[[list[bytes], list[bytes]], None],
        on_add: Callable[[list[bytes], list[bytes]], None], retry_max: float = 5.0,
    ) -> None:
        self._on_change = on_change
        self._on_add = on_add
        self._changed = asyncio.Event()
        self._added = Anchors([], [])
        self._rebuild = False
        self._listening = ListeningConnection(url, CHANNEL, self._notified, self._load, retry_max)
        self._querying = asyncio.Lock()  # one query at a time on the listening connection
        self._task: asyncio.Task[None] | None = None
        self.rebuilds = 0  # full reads since start, the first one included

    async def start(self) -> None:
        """Begin watching; returns once the first load is done (or the first attempt failed)."""
        await self._listening.start()
        self._task = asyncio.create_task(self._follow(), name="certificate-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._listening.stop()

    def _notified(self, payload: str) -> None:
        added = None if self._rebuild else announced(payload)
        if added is None:
            self._rebuild = True
            self._added = Anchors([], [])  # the rebuild reads them
        else:
            self._added.cas.extend(added.cas)
            self._added.credentials.extend(added.credentials)
        self._changed.set()

    async def _load(self, conn: asyncpg.Connection) -> None:
        async with self._querying:
            # What is announced during the query is applied after it (again, perhaps: harmless).
            self._rebuild = False
            self._added = Anchors([], [])
            self._changed.clear()
            anchors = await device_certificates(conn)
            self.rebuilds += 1
            self._on_change(*anchors)

    async def _follow(self) -> None:
        while True:
            await self._changed.wait()
            if not self._rebuild:
                added, self._added = self._added, Anchors([], [])
                self._changed.clear()
                if added.cas or added.credentials:
                    self._on_add(*added)
                continue
            conn = self._listening.connection
            if conn is None:  # reconnecting: the reconnection reloads
                self._changed.clear()
                continue
            try:
                await self._load(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("certificate reload failed (the reconnection reloads): %s", exc)
