"""deploy/grafana: the provisioning files and dashboards are valid, every metric a PromQL
expression names is in a real /metrics scrape of a running gateway, and every SQL query runs,
Grafana's macros and variables substituted, against the real PostgreSQL with the views, as the
read-only role the data source uses."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from fleetgate.storage.reader_role import create_reader_role
from tests.management_client import Management

GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def targets(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in board["panels"] for target in panel.get("targets", [])]


def datasource_uids() -> dict[str, str]:
    provisioned = yaml.safe_load((GRAFANA / "datasources.yaml").read_text())
    return {source["uid"]: source["type"] for source in provisioned["datasources"]}


def test_files_are_valid_and_name_provisioned_data_sources() -> None:
    assert [p.name for p in DASHBOARDS] == ["devices.json", "operations.json"]
    providers = yaml.safe_load((GRAFANA / "dashboards.yaml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = datasource_uids()
    for path in DASHBOARDS:
        board = dashboard(path)
        assert board["uid"] and board["title"] and board["panels"]
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
        for panel in board["panels"]:
            for source in [panel["datasource"], *(t["datasource"] for t in panel.get("targets", []))]:
                assert uids[source["uid"]] == source["type"], (path.name, panel["title"])
        for variable in board["templating"]["list"]:
            assert uids[variable["datasource"]["uid"]] == variable["datasource"]["type"]


def promql() -> list[str]:
    return [t["expr"] for path in DASHBOARDS for t in targets(dashboard(path)) if "expr" in t]


def scraped_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
        # A labelled metric nothing has counted yet has no samples, only its HELP and TYPE.
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [])
        names |= {family.name + suffix for suffix in suffixes}
    return names


async def test_every_promql_metric_is_in_a_real_scrape(management) -> None:
    async with management.get("/metrics") as resp:
        assert resp.status == 200
        names = scraped_names(await resp.text())
    expressions = promql()
    assert len(expressions) >= 15
    for expr in expressions:
        assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]"), expr
        metrics = set(re.findall(r"\b(gateway_[a-z0-9_]+)", re.sub(r"\{[^}]*\}", "", expr)))
        assert metrics, expr
        assert metrics <= names, (expr, metrics - names)
    # What the issue asks the operations dashboard to show.
    shown = " ".join(expressions)
    for metric in ("gateway_connections", "gateway_messages_total", "gateway_rows_stored_total",
                   "gateway_batch_write_seconds_bucket", "gateway_ingest_queue_rows", "gateway_database_errors_total",
                   "gateway_auth_failures_total", "gateway_provisioning_total", "gateway_devices_online",
                   "gateway_tls_handshakes_total"):
        assert metric in shown, metric


FROM, TO = 1_700_000_000, 1_700_000_000 + 86_400


def substituted(sql: str, variables: dict[str, str]) -> str:
    """What Grafana sends: its macros expanded, variables interpolated (a multi-value variable
    as a quoted list, as Grafana formats it for SQL data sources)."""
    sql = sql.replace("$__unixEpochFrom()", str(FROM)).replace("$__unixEpochTo()", str(TO))
    sql = sql.replace("$__interval_ms", "60000")
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 rf"\1 BETWEEN to_timestamp({FROM}) AND to_timestamp({TO})", sql)
    for name, value in variables.items():
        sql = sql.replace(f"${name}", value)
    assert "$" not in sql, sql
    return sql


@pytest.fixture
async def reader(gateway, database_url: str):
    role = "grafana_" + secrets.token_hex(3)
    await create_reader_role(gateway.services.pool, role, "pw")
    conn = await asyncpg.connect(database_url, user=role, password="pw")
    yield conn
    await conn.close()


async def test_every_sql_query_runs_as_the_reader_role(api: Management, http, reader) -> None:
    device = await api.create_device("grafana-" + secrets.token_hex(3))
    t0 = (FROM // 60 + 60) * 60_000  # on a minute: the dashboard buckets by minute here
    readings = [{"ts": t0 + n * 30_000, "values": {"temperature": 20 + n, "state": "ok"}} for n in range(10)]
    async with http.post(f"/api/v1/{device['auth_info']['access_token']}/telemetry",
                         data=orjson.dumps(readings)) as resp:
        assert resp.status == 200
    board = dashboard(GRAFANA / "dashboards" / "devices.json")
    variables = {"product": api.tenant.product_id, "device": device["device_id"]}
    for variable in board["templating"]["list"]:
        rows = await reader.fetch(substituted(variable["query"], variables))
        assert rows, variable["name"]
        if variable["name"] == "key":
            assert [r["key"] for r in rows] == ["state", "temperature"]
    answers = {}
    for panel in board["panels"]:
        for target in panel["targets"]:
            # A repeated panel has one key; the fleet table takes them all.
            key = "'temperature'" if panel.get("repeat") == "key" else "'temperature','state'"
            answers[panel["title"]] = await reader.fetch(substituted(target["rawSql"], {**variables, "key": key}))
    series = answers["$key"]
    # Minute buckets of the 10 points sent 30 s apart: 5 of them, with each one's average.
    assert [(r["metric"], r["value"]) for r in series] == [("temperature", 20.5 + 2 * n) for n in range(5)]
    assert [r["time"].timestamp() for r in series] == [t0 / 1000 + 60 * n for n in range(5)]
    fleet = [(r["device"], r["key"], r["value"]) for r in answers["Fleet: latest values and status"]]
    assert (device["device_name"], "state", "ok") in fleet and (device["device_name"], "temperature", "29") in fleet
    assert sum(r["devices"] for r in answers["Devices by status"]) >= 1
