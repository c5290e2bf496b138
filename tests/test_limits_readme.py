"""The limits table of docs/limits.md: every row names tests that exist, and every limit setting has a row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def limits_rows() -> list[list[str]]:
    page = (ROOT / "docs" / "limits.md").read_text()
    section = page.split("\n## The limits\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Limit")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_every_row_names_existing_tests() -> None:
    rows = limits_rows()
    assert len(rows) >= 15
    previous: list[tuple[str, str]] = []
    for row in rows:
        assert len(row) == 5, row
        named = re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", row[4])
        if row[4] == "same two tests":
            named = previous
        assert named, f"row without a test: {row[0]}"
        module = None
        for path, name in named:
            module = path or module
            assert module, row
            tree = ast.parse((ROOT / module).read_text())
            functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)}
            assert name in functions, f"{module}::{name} named by docs/limits.md does not exist"
        previous = [(module or "", name) for _, name in named]


def test_every_limit_setting_has_a_row() -> None:
    settings = " ".join(row[1] for row in limits_rows())
    for name in ("max_payload_bytes", "http_max_head_bytes", "mqtt_max_topic_length", "mqtt_max_client_id_length",
                 "max_datapoints_per_message", "max_key_length", "max_string_length", "max_connections_per_address",
                 "connection_rate_per_address", "connection_burst_per_address", "mqtt_max_connections",
                 "tls_handshake_timeout_seconds", "http_idle_seconds", "http_request_timeout_seconds",
                 "mqtt_connect_timeout_seconds", "auth_failures_per_address", "auth_block_seconds",
                 "provision_rate_per_key", "provision_burst_per_key"):
        assert f"`{name}`" in settings, name
