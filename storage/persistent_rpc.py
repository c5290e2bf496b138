"""ThingsBoard's persistent RPC calls (fleetgate.core.persistent_rpc), in the rpc_calls table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import orjson

from fleetgate.core.model import Page
from fleetgate.core.rpc_calls import PersistentCall, RpcStatus
from fleetgate.core.errors import InvalidInput
from fleetgate.storage.errors import translated
from fleetgate.storage.pages import fetch_page

_PENDING = [s.value for s in RpcStatus if s.pending]
_EXPIRE = """UPDATE rpc_calls SET status = 'EXPIRED', updated_at = $2
             WHERE device_id = $1 AND status = ANY($3::text[]) AND expiration_time <= $2"""


def _json(value: Any) -> str | None:
    # The pool's jsonb codec takes a str as JSON text: every value is dumped here, a string included.
    return None if value is None else orjson.dumps(value).decode()


@contextmanager
def _translated() -> Iterator[None]:
    with translated():
        try:
            yield
        except asyncpg.UntranslatableCharacterError as exc:  # jsonb holds no \u0000
            raise InvalidInput("JSON cannot contain the character U+0000") from exc


def _call(r: asyncpg.Record) -> PersistentCall:
    return PersistentCall(
        r["id"], r["device_id"], r["method"], r["params"], r["oneway"], r["timeout_ms"], r["expiration_time"],
        r["retries"], RpcStatus(r["status"]), r["attempts"], r["response"], r["created_at"],
    )


class PersistentRpcStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add_call(self, call: PersistentCall) -> None:
        with _translated():
            await self._pool.execute(
                """INSERT INTO rpc_calls (id, device_id, method, params, oneway, timeout_ms, expiration_time,
                                          retries, attempts, status, response, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)""",
                call.id, call.device_id, call.method, _json(call.params), call.oneway, call.timeout_ms,
                call.expiration_time, call.retries, call.attempts, call.status.value, _json(call.response),
                call.created_at,
            )

    async def call(self, device_id: str, call_id: str, now: int) -> PersistentCall | None:
        with _translated():
            async with self._pool.acquire() as conn:
                await conn.execute(_EXPIRE, device_id, now, _PENDING)
                r = await conn.fetchrow("SELECT * FROM rpc_calls WHERE device_id = $1 AND id = $2", device_id, call_id)
        return None if r is None else _call(r)

    async def list_calls(self, device_id: str, limit: int, marker: str, offset: int, now: int) -> Page:
        with _translated():
            async with self._pool.acquire() as conn:
                await conn.execute(_EXPIRE, device_id, now, _PENDING)
                return await fetch_page(conn, "rpc_calls", "device_id = $1", (device_id,), limit, marker, offset,
                                        _call)

    async def delete_call(self, device_id: str, call_id: str) -> bool:
        with _translated():
            status = await self._pool.execute("DELETE FROM rpc_calls WHERE device_id = $1 AND id = $2",
                                              device_id, call_id)
        return status == "DELETE 1"

    async def take_next(self, device_id: str, now: int) -> PersistentCall | None:
        # One statement, on the partial index of queued calls: what a device starting to listen costs.
        # An expired call is left for whatever reads it next to mark. SKIP LOCKED: of processes
        # taking at once, each gets another call (or none).
        with _translated():
            r = await self._pool.fetchrow(
                """UPDATE rpc_calls SET status = 'SENT', updated_at = $2
                   WHERE id = (SELECT id FROM rpc_calls WHERE device_id = $1 AND status = 'QUEUED'
                               AND expiration_time > $2 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     AND status = 'QUEUED'
                   RETURNING *""",
                device_id, now,
            )
        return None if r is None else _call(r)

    async def settle(
        self, call_id: str, status: RpcStatus, expected: frozenset[RpcStatus], now: int, *,
        response: object = None, delivered: bool = False,
    ) -> bool:
        with _translated():
            result = await self._pool.execute(
                """UPDATE rpc_calls SET status = $2, response = $3, updated_at = $4,
                                        attempts = attempts + $5
                   WHERE id = $1 AND status = ANY($6::text[])""",
                call_id, status.value, _json(response), now, 1 if delivered else 0, [s.value for s in expected],
            )
        return result == "UPDATE 1"
