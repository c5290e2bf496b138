"""The embedded PostgreSQL: the settings the composition root gives it, and the WAL the bench's
server makes ahead (docs/performance.md, the stall table: a new WAL segment is zero-filled while
every commit waits)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from fleetgate.config import EMBEDDED_POSTGRES
from fleetgate.simulator.bench_options import BenchOptions
from fleetgate.simulator.bench_workspace import _start_embedded, _stop_embedded, wal_ahead
from fleetgate.storage import embedded


def test_alter_system_sets_each_setting_then_reloads() -> None:
    assert embedded.alter_system({"min_wal_size": "2GB", "max_wal_size": "4GB"}) == (
        "ALTER SYSTEM SET min_wal_size = '2GB';\nALTER SYSTEM SET max_wal_size = '4GB';\nSELECT pg_reload_conf();\n"
    )


async def test_the_embedded_server_runs_with_the_settings_it_was_given(tmp_path: Path) -> None:
    url = embedded.start(tmp_path, EMBEDDED_POSTGRES)
    try:
        conn = await asyncpg.connect(url)
        try:
            shown = {name: await conn.fetchval(f"SHOW {name}") for name in EMBEDDED_POSTGRES}
        finally:
            await conn.close()
    finally:
        _stop_embedded(tmp_path)
    assert shown == dict(EMBEDDED_POSTGRES)


def test_the_bench_makes_wal_in_proportion_to_its_runs() -> None:
    assert wal_ahead(BenchOptions("mqtt", duration=8, warmup=2)) == 80
    assert wal_ahead(BenchOptions("http", duration=1, warmup=0.2)) == 10
    assert wal_ahead(BenchOptions("soak", duration=1800)) == 120  # at most what min_wal_size keeps
    assert wal_ahead(BenchOptions("mqtt", target="mosquitto")) == 0  # no database


@pytest.mark.parametrize("ahead", [0, 4])
async def test_the_bench_server_has_its_wal_segments_ready_and_commits_make_none(tmp_path: Path, ahead: int) -> None:
    url = _start_embedded(tmp_path, ahead)
    made = "SELECT sum(writes) FROM pg_stat_io WHERE object = 'wal' AND context = 'init'"
    try:
        conn = await asyncpg.connect(url)
        try:
            before = await conn.fetchval(made)
            await conn.execute("CREATE TABLE filler AS SELECT g, repeat('x', 200) AS v FROM generate_series(1, 150000) g")
            await conn.execute("SELECT pg_stat_force_next_flush()")  # this backend's counters, at its next idle
            await conn.execute("SELECT 1")
            after = await conn.fetchval(made)
            wal_mb = await conn.fetchval("SELECT wal_bytes / 1e6 FROM pg_stat_wal")
        finally:
            await conn.close()
    finally:
        _stop_embedded(tmp_path)
    assert wal_mb > 32  # more than two segments written...
    if ahead:
        assert after == before  # ...into segments made ahead: none zero-filled while the statement waited
    else:
        assert after > before  # ...each zero-filled on the way, the statement waiting
