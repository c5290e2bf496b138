"""Readiness: whether this process should be sent traffic (``/readyz``), as opposed to
whether it is alive at all (``/healthz``, always ``ok`` while the event loop answers).

A process is ready when its database answers, its ingest queue has room and its
listeners accept connections. Each check is named in the answer, so that an
operator (or ``kubectl describe``) sees which one failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    checks: dict[str, str]  # check name -> "ok" or why not

    @property
    def ready(self) -> bool:
        return all(value == "ok" for value in self.checks.values())


class Readiness:
    def __init__(
        self,
        database: Callable[[], Awaitable[None]],
        queue_saturated: Callable[[], bool],
        listening: Callable[[], bool],
        database_timeout: float = 2.0,
    ) -> None:
        self._database = database
        self._queue_saturated = queue_saturated
        self._listening = listening
        self._timeout = database_timeout

    async def report(self) -> ReadinessReport:
        return ReadinessReport({
            "database": await self._database_check(),
            "ingest_queue": "saturated" if self._queue_saturated() else "ok",
            "listeners": "ok" if self._listening() else "not accepting connections",
        })

    async def _database_check(self) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                await self._database()
        except TimeoutError:
            return f"no answer within {self._timeout:g} s"
        except Exception as exc:  # any failure means not ready; its type says which
            return f"unreachable: {type(exc).__name__}"
        return "ok"
