"""Forwarding rules, actions and the outbox (migration 0014): the stores gateway/forwarding*.py uses.

An outbox row is one lane of one action (a sixteenth of the devices): a lane is leased to one
worker at a time (forwarding_leases), which delivers its rows in id order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from fleetgate.core.forwarding_lines import entries_of
from fleetgate.core.forwarding_model import LANES, Action, Backlog, DeadLetter, Lane, OutboxItem, Route, Rule
from fleetgate.core.model import Page
from fleetgate.storage.errors import translated
from fleetgate.storage.pages import fetch_page
from fleetgate.storage.sealing import Sealer

CHANNEL = "forwarding"  # the NOTIFY channel: "rules" when rules change, "" when rows wait
assert LANES == 16, "the lanes of migration 0014's trigger are hashtext & 15"

_RULE_FILTERS = {"resource": "resource", "event": "event", "app_type": "app_type", "app_id": "app_id",
                 "rule_name": "name", "active": "active"}
_ACTION_FILTERS = {"rule_id": "rule_id", "channel": "channel"}
_ROW = "id, action_id, lane, resource, event, entries, count, created_at, attempts, delivered"

# The head of each lane of the action (its oldest row), with who holds the lane.
_HEADS = """
    SELECT g.lane, h.next_at, l.owner, l.lease_until FROM generate_series(0, 15) AS g(lane)
    CROSS JOIN LATERAL (SELECT o.next_at FROM forwarding_outbox o WHERE o.action_id = $1 AND o.lane = g.lane
                        ORDER BY o.id LIMIT 1) h
    LEFT JOIN forwarding_leases l ON l.action_id = $1 AND l.lane = g.lane"""

# A lane whose head is due, and not leased to another worker (or leased to this one, or lapsed).
_FREE_LANE = f"""
    SELECT lane FROM ({_HEADS}) heads
    WHERE next_at <= $3 AND (owner IS NULL OR owner = $2 OR lease_until <= $3)
    ORDER BY random() LIMIT 1"""

# A free lane leased (if another worker leased it first, nothing). Its rows are read by the next
# statement, not this one: a lane released by the worker that just delivered it is seen released
# here (ON CONFLICT reads the latest lease) while this statement's snapshot could still hold the
# rows that worker deleted in the same transaction.
_CLAIM = f"""
    WITH candidate AS ({_FREE_LANE})
    INSERT INTO forwarding_leases (action_id, lane, owner, lease_until) SELECT $1, lane, $2, $4 FROM candidate
    ON CONFLICT (action_id, lane) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
    WHERE forwarding_leases.owner = EXCLUDED.owner OR forwarding_leases.lease_until <= $3
    RETURNING lane"""

_ITEMS = f"SELECT {_ROW} FROM forwarding_outbox WHERE action_id = $1 AND lane = $2 ORDER BY id LIMIT $3"

# When a lane this worker may not take now becomes due: its head's retry, or another's lease.
_NEXT_DUE = f"""
    SELECT min(GREATEST(next_at, CASE WHEN owner <> $2 THEN lease_until ELSE 0 END)) FROM ({_HEADS}) heads"""

_DEAD = f"""
    WITH moved AS (DELETE FROM forwarding_outbox WHERE id = ANY($1::bigint[]) RETURNING *)
    INSERT INTO forwarding_dead_letters ({_ROW}, last_error, reason, dead_at)
    SELECT {_ROW.replace("attempts", "attempts + 1")}, coalesce($2, last_error), $3, $4 FROM moved
    ON CONFLICT (id) DO NOTHING"""

# The oldest rows beyond the bound (counted in notifications) go to the dead letters.
_TRIM = f"""
    WITH ranked AS (
        SELECT id, sum(count - delivered) OVER (ORDER BY id DESC) AS newer_and_this
        FROM forwarding_outbox WHERE action_id = $1
    ), moved AS (
        DELETE FROM forwarding_outbox WHERE id IN (SELECT id FROM ranked WHERE newer_and_this > $2) RETURNING *
    )
    INSERT INTO forwarding_dead_letters ({_ROW}, last_error, reason, dead_at)
    SELECT {_ROW}, last_error, 'backlog', $3 FROM moved
    ON CONFLICT (id) DO NOTHING
    RETURNING count - delivered"""

_REPLAY = """
    WITH moved AS (
        DELETE FROM forwarding_dead_letters dl USING forwarding_actions a
        WHERE dl.action_id = $1 AND a.id = dl.action_id AND a.project_id = $2
          AND ($3::bigint[] IS NULL OR dl.id = ANY($3::bigint[]))
        RETURNING dl.*)
    INSERT INTO forwarding_outbox (action_id, lane, resource, event, entries, count, created_at, delivered)
    SELECT action_id, lane, resource, event, entries, count, created_at, delivered FROM moved ORDER BY id"""


def _obj(value: Any) -> Any:
    """A jsonb column: decoded by the pool's codec, or text (a connection without it)."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _rule(r: asyncpg.Record) -> Rule:
    return Rule(r["id"], r["project_id"], r["name"], r["description"], r["resource"], r["event"], r["app_type"],
                r["app_id"], r["select_sql"], r["where_sql"], r["active"], r["created_at"])


# An action's secrets are sealed at rest, as provision secrets are (storage/sealing.py).
SECRETS = ("token", "password", "nkey_seed")


def _sealed(detail: Mapping[str, Any], sealer: Sealer | None) -> str:
    if sealer is not None:
        detail = {k: sealer.seal(v, f"forwarding_actions.detail.{k}") if k in SECRETS and isinstance(v, str) else v
                  for k, v in detail.items()}
    return orjson.dumps(dict(detail)).decode()


def _opened(detail: Any, sealer: Sealer | None) -> dict[str, Any]:
    detail = _obj(detail)
    if sealer is None:
        return detail
    return {k: sealer.open(v, f"forwarding_actions.detail.{k}") if k in SECRETS and isinstance(v, str) else v
            for k, v in detail.items()}


def _item(r: asyncpg.Record) -> OutboxItem:
    return OutboxItem(r["id"], r["action_id"], r["lane"], r["resource"], r["event"], entries_of(r["entries"]),
                      r["created_at"],
                      r["attempts"], r["delivered"])


def _filters(filters: Mapping[str, Any], columns: Mapping[str, str], first: int) -> tuple[str, list[Any]]:
    where, args = "", []
    for name, column in columns.items():
        value = filters.get(name)
        if value is not None:
            args.append(value)
            where += f" AND {column} = ${first + len(args)}"
    return where, args


class ForwardingStore:
    """Rules, actions (the RuleStore port) and the outbox (the OutboxStore port)."""

    def __init__(self, pool: asyncpg.Pool, sealer: Sealer | None = None) -> None:
        self._pool = pool
        self._sealer = sealer

    def _action(self, r: asyncpg.Record) -> Action:
        return Action(r["id"], r["rule_id"], r["project_id"], r["channel"], _opened(r["detail"], self._sealer),
                      r["created_at"])

    # rules and actions

    async def _changed(self, conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT pg_notify($1, 'rules')", CHANNEL)

    async def create_rule(self, rule: Rule) -> None:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """INSERT INTO forwarding_rules (id, project_id, name, description, resource, event, app_type,
                       app_id, select_sql, where_sql, active, created_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
                    rule.id, rule.project_id, rule.name, rule.description, rule.resource, rule.event, rule.app_type,
                    rule.app_id, rule.select, rule.where, rule.active, rule.created_at)
                await self._changed(conn)

    async def get_rule(self, project_id: str, rule_id: str) -> Rule | None:
        with translated():
            r = await self._pool.fetchrow("SELECT * FROM forwarding_rules WHERE project_id = $1 AND id = $2",
                                          project_id, rule_id)
        return _rule(r) if r else None

    async def list_rules(self, project_id: str, filters: Mapping[str, Any], limit: int, marker: str,
                         offset: int) -> Page:
        extra, args = _filters(filters, _RULE_FILTERS, 1)
        with translated():
            return await fetch_page(self._pool, "forwarding_rules", "project_id = $1" + extra, [project_id, *args],
                                    limit, marker, offset, _rule)

    async def update_rule(self, rule: Rule) -> None:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """UPDATE forwarding_rules SET name = $3, description = $4, select_sql = $5, where_sql = $6,
                       active = $7 WHERE project_id = $1 AND id = $2""",
                    rule.project_id, rule.id, rule.name, rule.description, rule.select, rule.where, rule.active)
                await self._changed(conn)

    async def delete_rule(self, project_id: str, rule_id: str) -> bool:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                actions = await conn.fetch("SELECT id FROM forwarding_actions WHERE rule_id = $1", rule_id)
                status = await conn.execute("DELETE FROM forwarding_rules WHERE project_id = $1 AND id = $2",
                                            project_id, rule_id)
                if status.endswith(" 1"):
                    await self._forget(conn, [r["id"] for r in actions])
                await self._changed(conn)
        return status.endswith(" 1")

    async def create_action(self, action: Action) -> None:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """INSERT INTO forwarding_actions (id, rule_id, project_id, channel, detail, created_at)
                       VALUES ($1, $2, $3, $4, $5, $6)""",
                    action.id, action.rule_id, action.project_id, action.channel,
                    _sealed(action.detail, self._sealer), action.created_at)
                await self._changed(conn)

    async def get_action(self, project_id: str, action_id: str) -> Action | None:
        with translated():
            r = await self._pool.fetchrow("SELECT * FROM forwarding_actions WHERE project_id = $1 AND id = $2",
                                          project_id, action_id)
        return self._action(r) if r else None

    async def list_actions(self, project_id: str, filters: Mapping[str, Any], limit: int, marker: str,
                           offset: int) -> Page:
        extra, args = _filters(filters, _ACTION_FILTERS, 1)
        with translated():
            return await fetch_page(self._pool, "forwarding_actions", "project_id = $1" + extra,
                                    [project_id, *args], limit, marker, offset, self._action)

    async def update_action(self, action: Action) -> None:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE forwarding_actions SET channel = $3, detail = $4 WHERE project_id = $1 AND id = $2",
                    action.project_id, action.id, action.channel, _sealed(action.detail, self._sealer))
                await self._changed(conn)

    async def delete_action(self, project_id: str, action_id: str) -> bool:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                status = await conn.execute("DELETE FROM forwarding_actions WHERE project_id = $1 AND id = $2",
                                            project_id, action_id)
                if status.endswith(" 1"):
                    await self._forget(conn, [action_id])
                await self._changed(conn)
        return status.endswith(" 1")

    async def _forget(self, conn: asyncpg.Connection, action_ids: list[str]) -> None:
        for table in ("forwarding_outbox", "forwarding_dead_letters", "forwarding_leases"):
            await conn.execute(f"DELETE FROM {table} WHERE action_id = ANY($1::text[])", action_ids)

    async def routes(self) -> list[Route]:
        with translated():
            records = await self._pool.fetch(
                """SELECT a.id AS a_id, a.rule_id, a.project_id AS a_project, a.channel, a.detail,
                          a.created_at AS a_created, r.*
                   FROM forwarding_actions a JOIN forwarding_rules r ON r.id = a.rule_id WHERE r.active""")
        return [Route(Action(r["a_id"], r["rule_id"], r["a_project"], r["channel"], _opened(r["detail"], self._sealer),
                             r["a_created"]), _rule(r)) for r in records]

    async def property_actions(self) -> dict[int, tuple[str, ...]]:
        """Project number -> the actions of its active device.property/report rules: what the
        telemetry writer adds outbox rows for."""
        with translated():
            records = await self._pool.fetch(
                """SELECT p.no, array_agg(a.id ORDER BY a.id) AS actions
                   FROM forwarding_rules r JOIN forwarding_actions a ON a.rule_id = r.id
                   JOIN projects p ON p.id = r.project_id
                   WHERE r.active AND r.resource = 'device.property' AND r.event = 'report' GROUP BY p.no""")
        return {r["no"]: tuple(r["actions"]) for r in records}

    # the outbox

    async def claim(self, action_id: str, owner: str, now: int, lease_ms: int, limit: int) -> Lane | None:
        with translated():
            async with self._pool.acquire() as conn:
                for _ in range(3):  # another worker may lease the lane first
                    lane = await conn.fetchval(_CLAIM, action_id, owner, now, now + lease_ms)
                    if lane is not None:
                        rows = await conn.fetch(_ITEMS, action_id, lane, limit)
                        return Lane(action_id, lane, tuple(_item(r) for r in rows))
                    if await conn.fetchval(_FREE_LANE, action_id, owner, now) is None:
                        return None
        return None

    async def delivered(self, lane: Lane, owner: str, ids: Sequence[int], *, release: bool = False) -> None:
        with translated():
            await self._pool.execute(
                """WITH done AS (DELETE FROM forwarding_outbox WHERE id = ANY($1::bigint[]))
                   UPDATE forwarding_leases SET lease_until = 0
                   WHERE $5 AND action_id = $2 AND lane = $3 AND owner = $4""",
                list(ids), lane.action_id, lane.lane, owner, release)

    async def retry(self, item: OutboxItem, error: str, next_at: int, delivered: int) -> None:
        with translated():
            await self._pool.execute(
                """UPDATE forwarding_outbox SET attempts = attempts + 1, next_at = $2, last_error = $3, delivered = $4
                   WHERE id = $1""", item.id, next_at, error, delivered)

    async def dead_letter(self, items: Sequence[OutboxItem], reason: str, error: str | None, now: int) -> None:
        with translated():
            await self._pool.execute(_DEAD, [i.id for i in items], error, reason, now)

    async def release(self, lane: Lane, owner: str) -> None:
        with translated():
            await self._pool.execute(
                "UPDATE forwarding_leases SET lease_until = 0 WHERE action_id = $1 AND lane = $2 AND owner = $3",
                lane.action_id, lane.lane, owner)

    async def next_due(self, action_id: str, owner: str = "") -> int | None:
        with translated():
            return await self._pool.fetchval(_NEXT_DUE, action_id, owner)

    async def backlog(self) -> dict[str, Backlog]:
        with translated():
            records = await self._pool.fetch(
                """SELECT action_id, sum(count - delivered) AS n, min(created_at) AS oldest FROM forwarding_outbox
                   GROUP BY action_id""")
        return {r["action_id"]: Backlog(r["n"], r["oldest"]) for r in records}

    async def trim(self, action_id: str, keep: int, now: int) -> int:
        with translated():
            moved = await self._pool.fetch(_TRIM, action_id, keep, now)
        return sum(r[0] for r in moved)

    async def compact(self) -> None:
        """VACUUM the outbox: each delivery deletes its rows, and the index entries they leave behind
        slow down finding each lane's head until they are gone; autovacuum comes by once a minute at
        best. Skipped when another process is at it."""
        with translated():
            await self._pool.execute("VACUUM (SKIP_LOCKED) forwarding_outbox")

    async def headers(self, device_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        with translated():
            records = await self._pool.fetch(
                "SELECT id, product_id, name, gateway_id FROM devices WHERE id = ANY($1::text[])", list(device_ids))
        return {r["id"]: {"device_id": r["id"], "product_id": r["product_id"], "node_id": r["name"],
                          "gateway_id": r["gateway_id"] or r["id"]} for r in records}

    async def dead_letters(self, project_id: str, action_id: str, limit: int, marker: str, offset: int) -> Page:
        with translated():
            records = await self._pool.fetch(
                """SELECT dl.* FROM forwarding_dead_letters dl JOIN forwarding_actions a ON a.id = dl.action_id
                   WHERE dl.action_id = $1 AND a.project_id = $2 ORDER BY dl.id LIMIT $3 OFFSET $4""",
                action_id, project_id, limit, offset)
            count = await self._pool.fetchval(
                """SELECT count(*) FROM forwarding_dead_letters dl JOIN forwarding_actions a ON a.id = dl.action_id
                   WHERE dl.action_id = $1 AND a.project_id = $2""", action_id, project_id)
        return Page(tuple(DeadLetter(_item(r), r["reason"], r["last_error"], r["dead_at"]) for r in records), count)

    async def replay(self, project_id: str, action_id: str, ids: Sequence[int] | None) -> int:
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                status = await conn.execute(_REPLAY, action_id, project_id, None if ids is None else list(ids))
                await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
        return int(status.split()[-1])

    async def announce(self) -> None:
        """Rows were committed for actions other processes deliver: their forwarders look. Sent on
        a pool connection after the commit, never in the writing transaction (a NOTIFY there takes
        a database-wide lock at commit)."""
        with translated():
            await self._pool.execute("SELECT pg_notify($1, '')", CHANNEL)
