"""What per-project time-to-live costs in the ``month`` telemetry layout: deleting one project's
expired month of N rows in batches (storage/retention_month.py), against dropping a month
partition holding the same N rows (what the ``project-month`` layout does for that project).

    python -m fleetgate.retention_measure [--rows 200000] [--database-url URL]

In a database of its own (made on the server of --database-url, or of an embedded PostgreSQL in
a temporary directory, and dropped after), converted to the month layout: one month holds N rows
of a project with a short time-to-live and N rows of one keeping its telemetry forever (100
devices each, one key), a later month holds N rows of one project only. Timed: the batched
delete of the first project's N rows; the drop of the second month's partition. WAL written by
each is read from pg_current_wal_lsn(). A component measured in process, beside the composition
root like fleetgate.trust_store_measure, because what is measured is PostgreSQL's work.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import secrets
import shutil
import sys
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from fleetgate.storage import embedded
from fleetgate.storage.database import open_pool
from fleetgate.storage.layout_conversion import convert
from fleetgate.storage.month_partitions import MonthPartitions
from fleetgate.storage.partitions import LOCK_TS_KV, month_bounds
from fleetgate.storage.retention_month import BATCH_ROWS, delete_expired_rows
from fleetgate.storage.telemetry_layout import Layout

_MAX_ROWS = 2_000_000
_DEVICES = 100
_FILL = """INSERT INTO ts_kv (device_id, key, ts, project_no, dbl_v)
           SELECT $1 || (i % 100), 1, $2::bigint + i / 100, $3, i FROM generate_series(0, $4 - 1) i"""


async def _project(pool: asyncpg.Pool, ttl_days: int) -> int:
    return await pool.fetchval("INSERT INTO projects (id, name, created_at, telemetry_ttl_days) "
                               "VALUES ($1, $1, 0, $2) RETURNING no", secrets.token_hex(12), ttl_days)


async def _wal(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


async def measure(url: str, rows: int) -> dict[str, object]:
    pool = await open_pool(url, 2)
    try:
        await convert(pool, Layout.MONTH)
        short, forever, alone = await _project(pool, 30), await _project(pool, 0), await _project(pool, 0)
        # The project's month (January) expired, the other month (June) not: only January is read.
        shared, own = month_bounds(2000, 1)[0], month_bounds(2000, 6)[0]
        await MonthPartitions().ensure(pool, {(short, shared), (alone, own)})
        await pool.execute(_FILL, "short-", shared, short, rows)
        await pool.execute(_FILL, "forever-", shared, forever, rows)
        await pool.execute(_FILL, "alone-", own, alone, rows)
        await pool.execute("VACUUM ANALYZE ts_kv")

        wal, start = await _wal(pool), time.perf_counter()
        deleted = await delete_expired_rows(pool, month_bounds(2000, 2)[0] + 31 * 86_400_000,
                                            {short: 30, forever: 0, alone: 0}, 0)
        delete_seconds, delete_wal = time.perf_counter() - start, await _wal(pool) - wal
        assert deleted == rows, (deleted, rows)

        wal, start = await _wal(pool), time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_TS_KV)
            await conn.execute("DROP TABLE ts_kv_2000_06")
        drop_seconds, drop_wal = time.perf_counter() - start, await _wal(pool) - wal
    finally:
        await pool.close()
    return {
        "rows": rows,
        "batch_rows": BATCH_ROWS,
        "batched delete of one project's month, seconds": round(delete_seconds, 3),
        "batched delete, rows per second": round(rows / delete_seconds),
        "batched delete, WAL bytes": delete_wal,
        "drop of a month partition of as many rows, seconds": round(drop_seconds, 4),
        "drop, WAL bytes": drop_wal,
        "delete / drop, time": round(delete_seconds / drop_seconds),
    }


async def _in_own_database(server_url: str, rows: int) -> dict[str, object]:
    name = "retention_measure_" + secrets.token_hex(4)
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            return await measure(urlunsplit(urlsplit(server_url)._replace(path="/" + name)), rows)
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleetgate.retention_measure", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help=f"N, at most {_MAX_ROWS:,}")
    parser.add_argument("--database-url", help="a server to make the scratch database on [default: embedded]")
    args = parser.parse_args(argv)
    if not 0 < args.rows <= _MAX_ROWS:
        parser.error(f"--rows: from 1 to {_MAX_ROWS:,}")
    url = args.database_url
    if not url:
        scratch = tempfile.mkdtemp(prefix="retention-measure-")
        # Registered first, so run last: after the embedded server stops at exit.
        atexit.register(shutil.rmtree, scratch, True)
        url = embedded.start(scratch)
    result = asyncio.run(_in_own_database(url, args.rows))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
