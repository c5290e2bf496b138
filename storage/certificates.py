"""Device certificates as TLS trust anchors, reloaded whenever PostgreSQL says they changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from gateway.credentials import trim_certificate
from storage.device_cas import trusted_ca_pems

log = logging.getLogger(__name__)
CHANNEL = "device_certificates"


async def device_certificates(pool: asyncpg.Pool | asyncpg.Connection) -> list[str]:
    """The trust anchors (trimmed Base64 bodies): every X509_CERTIFICATE credential's
    certificate, and every verified device CA certificate."""
    records = await pool.fetch(
        "SELECT certificate FROM device_credentials WHERE type = 'X509_CERTIFICATE' AND certificate IS NOT NULL")
    return [r["certificate"] for r in records] + [trim_certificate(pem) for pem in await trusted_ca_pems(pool)]


class CertificateWatch:
    """Calls ``on_change`` with the current certificates at start and after every change.

    LISTEN needs a connection of its own: a pooled one would lose it at reset. When
    that connection is lost, the watch reconnects with back-off and reloads.
    """

    def __init__(self, url: str, on_change: Callable[[list[str]], None], retry_max: float = 5.0) -> None:
        self._url = url
        self._on_change = on_change
        self._retry_max = retry_max
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Begin watching; returns once the first load is done (or the first attempt failed)."""
        self._task = asyncio.create_task(self._run(), name="certificate-watch")
        await self._ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            changed, lost = asyncio.Event(), asyncio.Event()
            try:
                conn = await asyncpg.connect(self._url)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("certificate watch cannot connect, retrying in %.1fs: %s", delay, exc)
                self._ready.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            try:
                conn.add_termination_listener(lambda _: lost.set())
                # Listen first, then load: a change in between is not missed.
                await conn.add_listener(CHANNEL, lambda *_: changed.set())
                self._on_change(await device_certificates(conn))
                self._ready.set()
                delay = 0.1
                while not lost.is_set():
                    waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(lost.wait())]
                    try:
                        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for waiter in waiters:
                            waiter.cancel()
                    if changed.is_set() and not lost.is_set():
                        changed.clear()
                        self._on_change(await device_certificates(conn))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("certificate watch lost its connection: %s", exc)
            finally:
                if not conn.is_closed():
                    await conn.close()
