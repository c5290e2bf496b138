"""A read-only database role for the public SQL views (schema iot, migration 0013; docs/sql.md).

The role may log in, read the views, and nothing else: no grant on the tables under them (a view
reads its tables with its owner's rights), its transactions read-only by default, and the views'
schema first on its search path, so ``SELECT * FROM telemetry`` works in psql and in Grafana.
Running the command again for the same role sets its password and grants again.
"""

from __future__ import annotations

import re

import asyncpg

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def valid_role_name(name: str) -> bool:
    """Lower-case letters, digits and underscores, as unquoted SQL identifiers are."""
    return bool(_NAME.fullmatch(name)) and not name.startswith("pg_")


async def create_reader_role(pool: asyncpg.Pool, name: str, password: str) -> None:
    """Create (or update) role ``name`` with ``password``; ``name`` must be valid_role_name."""
    if not valid_role_name(name):
        raise ValueError(f"role name {name!r}: lower-case letters, digits and underscores")
    async with pool.acquire() as conn, conn.transaction():
        exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", name)
        verb = "ALTER" if exists else "CREATE"
        # Identifiers and literals quoted by PostgreSQL itself (format's %I and %L).
        statements = [
            ("SELECT format('%s ROLE %%I LOGIN PASSWORD %%L', $1::text, $2::text)" % verb, name, password),
            ("SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), $1::text)", name),
            ("SELECT format('GRANT USAGE ON SCHEMA iot TO %I', $1::text)", name),
            ("SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA iot TO %I', $1::text)", name),
            ("SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', $1::text)", name),
            ("SELECT format('ALTER ROLE %I SET search_path = iot', $1::text)", name),
        ]
        for query, *args in statements:
            await conn.execute(await conn.fetchval(query, *args))
