"""Converting ts_kv from one layout to the other (storage/telemetry_layout.py):
``iot-gateway admin telemetry-layout month|project-month``, and at a fresh installation's first
start, to the layout the ``telemetry_layout`` setting names (settle()).

A new table ``ts_kv_next`` in the target layout takes the rows a month at a time, one
transaction a month, so no transaction holds a whole table's rows or locks for long. Then,
in one short transaction holding ts_kv's ACCESS EXCLUSIVE lock, the tables are swapped.

Views bind to a table by its OID, so a rename would drag the public views of migration 0013
(and any other view over ts_kv) along to the retired table: their definitions are read before
the swap and replaced (CREATE OR REPLACE VIEW) after it, which keeps each view's OID, owner and
grants, so the reader roles (storage/reader_role.py) keep reading them.

Only safe while no gateway writes: a row written to a month already moved would be lost. So the
conversion refuses while any gateway process holds a live lease, and the swap counts both tables
under the lock and gives up if they differ. Running it again after a failure starts over;
running it for the layout the database has already does nothing.
"""

from __future__ import annotations

import logging
import re

import asyncpg

from fleetgate.core.errors import Conflict
from fleetgate.storage.month_partitions import create_months
from fleetgate.storage.partitions import LOCK_TS_KV, month_bounds, month_of, month_table, project_table
from fleetgate.storage.telemetry_layout import CONVERT_COMMAND, Layout, current_layout, live_gateways

log = logging.getLogger(__name__)

_LOCK_KEY = 0x7A_B1_E7
_NEXT = "ts_kv_next"
_RETIRED = "ts_kv_retired"
_PARTITION_BY = {Layout.MONTH: "RANGE (ts)", Layout.PROJECT_MONTH: "LIST (project_no)"}
_RANGE = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")

# ts_kv's leaf partitions at any depth. From the catalog, not pg_partition_tree() (see
# storage/retention.py).
_LEAVES = """WITH RECURSIVE tree(oid) AS (
                 SELECT inhrelid FROM pg_inherits WHERE inhparent = 'ts_kv'::regclass
                 UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)
             SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
             FROM tree JOIN pg_class c ON c.oid = tree.oid WHERE c.relkind = 'r'"""

# Every view reading ts_kv, with its definition as it reads now (naming ts_kv).
_VIEWS = """SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition
            FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
            WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'ts_kv'::regclass
              AND v.oid <> 'ts_kv'::regclass"""


async def convert(pool: asyncpg.Pool, target: Layout) -> bool:
    """Bring ts_kv to ``target``; False if it was in that layout already."""
    async with pool.acquire() as conn:
        # Session-level: the conversion spans many transactions. A second conversion waits,
        # then finds the work done.
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            if await current_layout(conn) is target:
                return False
            if running := await live_gateways(conn):
                raise Conflict(f"{running} gateway process(es) running: stop every gateway before "
                               f"`{CONVERT_COMMAND}` (rows written meanwhile would be lost)")
            await conn.execute(f"DROP TABLE IF EXISTS {_NEXT}")  # what a failed run left
            await conn.execute(f"CREATE TABLE {_NEXT} (LIKE ts_kv INCLUDING ALL) PARTITION BY {_PARTITION_BY[target]}")
            for year, month in await _months(conn):
                await _move(conn, target, year, month)
            await _swap(conn)
            return True
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def settle(pool: asyncpg.Pool, wanted: Layout) -> Layout:
    """The layout this process writes in: the database's, which becomes ``wanted`` when ts_kv
    holds no row yet and no other gateway is running (a fresh installation)."""
    layout = await current_layout(pool)
    if layout is wanted:
        return layout
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM ts_kv)") and not await live_gateways(pool):
        await convert(pool, wanted)
        return await current_layout(pool)
    log.warning("telemetry_layout is %s but the database's telemetry is stored in the %s layout: using %s; "
                "`%s %s` converts the database (with every gateway stopped)", wanted, layout, layout,
                CONVERT_COMMAND, wanted)
    return layout


async def _months(conn: asyncpg.Connection) -> list[tuple[int, int]]:
    months = set()
    for leaf in await conn.fetch(_LEAVES):
        bounds = _RANGE.search(leaf["bound"] or "")
        if bounds is None:
            raise RuntimeError(f"ts_kv partition {leaf['name']} has no range of time: {leaf['bound']}")
        lo, hi = int(bounds[1]), int(bounds[2])
        if month_bounds(*month_of(lo)) != (lo, hi):
            raise RuntimeError(f"ts_kv partition {leaf['name']} is not one calendar month")
        months.add(month_of(lo))
    return sorted(months)


async def _move(conn: asyncpg.Connection, target: Layout, year: int, month: int) -> None:
    lo, hi = month_bounds(year, month)
    async with conn.transaction():
        # Writers wait (they may not run anyway): the month's rows cannot change under the copy.
        await conn.execute("LOCK TABLE ONLY ts_kv IN SHARE MODE")
        if target is Layout.MONTH:
            await create_months(conn, [(year, month)], parent=_NEXT)
        else:
            for (no,) in await conn.fetch(
                    "SELECT DISTINCT project_no FROM ts_kv WHERE ts >= $1 AND ts < $2 ORDER BY 1", lo, hi):
                await conn.execute(f"CREATE TABLE IF NOT EXISTS {project_table(no)} PARTITION OF {_NEXT} "
                                   f"FOR VALUES IN ({no}) PARTITION BY RANGE (ts)")
                await conn.execute(f"CREATE TABLE {month_table(no, year, month)} PARTITION OF {project_table(no)} "
                                   f"FOR VALUES FROM ({lo}) TO ({hi})")
        await conn.execute(f"INSERT INTO {_NEXT} SELECT * FROM ts_kv WHERE ts >= $1 AND ts < $2", lo, hi)


async def _swap(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute(LOCK_TS_KV)
        old = await conn.fetchval("SELECT count(*) FROM ts_kv")
        new = await conn.fetchval(f"SELECT count(*) FROM {_NEXT}")
        if old != new:
            raise Conflict(f"ts_kv changed during the conversion ({old} rows, {new} moved): stop every gateway "
                           f"and run `{CONVERT_COMMAND}` again")
        views = await conn.fetch(_VIEWS)
        await conn.execute(f"ALTER TABLE ts_kv RENAME TO {_RETIRED}")
        await conn.execute(f"ALTER TABLE {_NEXT} RENAME TO ts_kv")
        for view in views:
            await conn.execute(f"CREATE OR REPLACE VIEW {view['name']} AS {view['definition']}")
        await conn.execute(f"DROP TABLE {_RETIRED}")
        await conn.execute(f"ALTER TABLE ts_kv RENAME CONSTRAINT {_NEXT}_pkey TO ts_kv_pkey")
