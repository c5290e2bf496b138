"""IoTDA's marker pagination: ids descending (newest first), a marker, an offset from it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from fleetgate.core.model import Page

NO_MARKER = "ffffffffffffffffffffffff"


async def fetch_page(
    conn: asyncpg.Pool | asyncpg.Connection,
    table: str,
    where: str,
    args: Sequence[Any],
    limit: int,
    marker: str,
    offset: int,
    convert: Callable[[asyncpg.Record], Any],
) -> Page:
    """Rows of ``table`` matching ``where`` (which uses $1..$n for ``args``)."""
    n = len(args)
    # No marker: from the top. (A stand-in marker would hide ids an operator chose above it: "meter-1".)
    after = f" AND id < ${n + 3}" if marker and marker != NO_MARKER else ""
    records = await conn.fetch(
        f"SELECT * FROM {table} WHERE {where}{after} ORDER BY id DESC LIMIT ${n + 1} OFFSET ${n + 2}",
        *args, limit, offset, *((marker,) if after else ()),
    )
    count = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *args)
    items = tuple(convert(r) for r in records)
    return Page(items, count, records[-1]["id"] if records else None)
