"""The presence port: each process's batch of connectivity, written set-based in one transaction.

The statements run in the order that keeps "was it online already?" right: the lease,
new connections (a device's last_online_time is set only if it was offline), activity,
then the connections that ended. Each is idempotent, so a batch written again after a
failure changes nothing it already changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from fleetgate.core.errors import Unavailable
from fleetgate.core.presence_model import PresenceBatch
from fleetgate.storage.errors import translated


def _live(at: str, *, other_than: str = "") -> str:
    """Whether device d holds a connection of a live process at ``at`` (not counting process ``other_than``)."""
    besides = f" AND c.process_id <> {other_than}" if other_than else ""
    return f"""EXISTS (SELECT FROM device_connections c JOIN gateway_processes p ON p.id = c.process_id
                       WHERE c.device_id = d.id AND p.lease_until > {at}{besides})"""


def _leased(at: str) -> str:
    """Whether device d is online at ``at`` by its last request."""
    return f"coalesce(d.online_until > {at}, false)"


# Renewed (xmax set by the update), or taken anew when it had lapsed and was ended meanwhile.
_RENEW = """INSERT INTO gateway_processes (id, lease_until) VALUES ($1, $2)
            ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until
            RETURNING NOT (xmax = 0)"""

# Processes whose lease ran out: their connections end, and the devices have been offline
# since (unless online otherwise: by another process, or by a request after it).
_REAP = f"""
    WITH dead AS (
        DELETE FROM gateway_processes WHERE lease_until <= $1 RETURNING id, lease_until
    ), ended AS (
        DELETE FROM device_connections c USING dead WHERE c.process_id = dead.id
        RETURNING c.device_id, dead.lease_until
    )
    UPDATE devices d SET last_offline_time = GREATEST(d.last_offline_time, e.until)
    FROM (SELECT device_id, max(lease_until) AS until FROM ended GROUP BY device_id) e
    WHERE d.id = e.device_id AND NOT {_leased("e.until")} AND NOT {_live("$1")}"""

# An expired request lease, when the device comes online again, is kept as its last offline time.
_LAPSED_LEASE = """CASE WHEN d.online_until <= {at} THEN GREATEST(d.last_offline_time, d.online_until)
                        ELSE d.last_offline_time END"""

_OPEN = f"""
    WITH opened AS (
        INSERT INTO device_connections (device_id, process_id, since)
        SELECT id, $1, since FROM unnest($2::text[], $3::bigint[]) AS u(id, since)
        ON CONFLICT DO NOTHING RETURNING device_id, since
    )
    UPDATE devices d SET last_online_time = o.since, last_offline_time = {_LAPSED_LEASE.format(at="o.since")}
    FROM opened o
    WHERE d.id = o.device_id AND NOT {_leased("o.since")} AND NOT {_live("o.since")}"""

# Activity at $3; requests ($2) also make the device online until $4.
_ACTIVE = f"""
    UPDATE devices d SET
        last_activity_time = GREATEST(d.last_activity_time, $3),
        online_until = CASE WHEN u.request THEN GREATEST(d.online_until, $4) ELSE d.online_until END,
        last_online_time = CASE WHEN u.request AND NOT {_leased("$3")} AND NOT {_live("$3")}
                                THEN $3 ELSE d.last_online_time END,
        last_offline_time = CASE WHEN u.request THEN {_LAPSED_LEASE.format(at="$3")} ELSE d.last_offline_time END
    FROM unnest($1::text[], $2::boolean[]) AS u(id, request)
    WHERE d.id = u.id"""

# Connections closed with the device still online by its last request: no offline time.
_RELEASE = "DELETE FROM device_connections WHERE process_id = $1 AND device_id = ANY($2::text[])"

# Connections closed: the device is offline from then on, unless connected elsewhere; an
# explicit disconnect ends its request lease too.
_CLOSE = f"""
    WITH closed AS (
        DELETE FROM device_connections c USING unnest($2::text[], $3::bigint[]) AS u(id, at)
        WHERE c.process_id = $1 AND c.device_id = u.id RETURNING c.device_id, u.at
    )
    UPDATE devices d SET last_offline_time = e.at,
        online_until = CASE WHEN d.online_until > e.at THEN e.at ELSE d.online_until END
    FROM closed e WHERE d.id = e.device_id AND NOT {_live("e.at", other_than="$1")}"""

_END_PROCESS = f"""
    WITH process AS (
        DELETE FROM gateway_processes WHERE id = $1
    ), ended AS (
        DELETE FROM device_connections WHERE process_id = $1 RETURNING device_id
    )
    UPDATE devices d SET last_offline_time = $2
    FROM ended e WHERE d.id = e.device_id AND NOT {_leased("$2")} AND NOT {_live("$2", other_than="$1")}"""


class PresenceStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def write_presence(self, batch: PresenceBatch) -> bool:
        b = batch
        requests = set(b.requests)
        active = [*(d for d in b.seen if d not in requests), *requests]
        with translated(), _transient():
            async with self._pool.acquire() as conn, conn.transaction():
                renewed = await conn.fetchval(_RENEW, b.process_id, b.lease_until)
                await conn.execute(_REAP, b.now)
                if b.opened:
                    await conn.execute(_OPEN, b.process_id, [d for d, _ in b.opened], [t for _, t in b.opened])
                if active:
                    flags = [d in requests for d in active]
                    await conn.execute(_ACTIVE, active, flags, b.now, b.online_until)
                if b.released:
                    await conn.execute(_RELEASE, b.process_id, list(b.released))
                if b.closed:
                    await conn.execute(_CLOSE, b.process_id, [d for d, _ in b.closed], [t for _, t in b.closed])
        return bool(renewed)

    async def end_process(self, process_id: str, now: int) -> None:
        with translated(), _transient():
            await self._pool.execute(_END_PROCESS, process_id, now)


@contextmanager
def _transient() -> Iterator[None]:
    """Two processes' batches may lock the same devices in opposite orders: PostgreSQL then
    aborts one, and its batch is written with the next, as when the database is down."""
    try:
        yield
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        raise Unavailable(f"connectivity not written: {type(exc).__name__}") from exc
