"""Grafana for analysts (``deploy/grafana``), checked without a Grafana: the provisioned data
sources log in as the read-only analyst user; every dashboard panel points at a provisioned
data source; every ClickHouse query of every panel and variable, with Grafana's macros filled
in, runs in the real engine on the migrated archive through the analyst gate (readonly = 1,
one tenant's rows); every PromQL query names a metric the services export."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from plantstream import metrics
from plantstream.db import connect, migrate
from plantstream.db.readonly import AnalystSession, Scope

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "plantstream.yaml").read_text())
UIDS = {d["uid"]: d["type"] for d in SOURCES["datasources"]}
NOW = datetime.now(UTC).replace(microsecond=0)
AN_HOUR_AGO = (NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")  # inside the archive's TTL
# The ClickHouse plugin's macros, as it expands them for the last day.
MACROS = {
    r"\$__timeFilter\((\w+)\)": rf"\1 >= toDateTime64('{(NOW - timedelta(days=1)):%Y-%m-%d %H:%M:%S}', 3) "
                                rf"AND \1 <= toDateTime64('{NOW:%Y-%m-%d %H:%M:%S}', 3)",
    r"\$\{tenant\}": "acme",
    r"\$\{machine\}": "press-01",
}


def expand(sql: str) -> str:
    for pattern, repl in MACROS.items():
        sql = re.sub(pattern, repl, sql)
    assert "$" not in sql, f"a macro the test does not know: {sql}"
    return sql


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in DASHBOARDS]


def clickhouse_queries() -> list[tuple[str, str]]:
    out = []
    for board in dashboards():
        for var in board["templating"]["list"]:
            if var["datasource"]["uid"] == "plantstream-clickhouse":
                out.append((f"{board['uid']} ${var['name']}", var["query"]))
        for panel in board["panels"]:
            for t in panel["targets"]:
                if t["datasource"]["uid"] == "plantstream-clickhouse":
                    out.append((f"{board['uid']} {panel['title']}", t["rawSql"]))
    return out


def test_the_data_sources_log_in_as_the_read_only_analyst_with_a_password_from_the_environment() -> None:
    ch = next(d for d in SOURCES["datasources"] if d["type"] == "grafana-clickhouse-datasource")
    assert ch["jsonData"]["username"] == "analyst"  # never the writer (default) user
    assert ch["secureJsonData"]["password"] == "$CLICKHOUSE_ANALYST_PASSWORD"
    users = (REPO / "deploy" / "compose" / "clickhouse-analyst.xml").read_text()
    assert "<readonly>1</readonly>" in users and 'from_env="CLICKHOUSE_ANALYST_PASSWORD"' in users
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounted == {"../grafana/provisioning": "/etc/grafana/provisioning",
                       "../grafana/dashboards": "/var/lib/grafana/dashboards"}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "plantstream.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_dashboard_is_well_formed_and_uses_provisioned_sources() -> None:
    boards = dashboards()
    assert {b["title"] for b in boards} == {"Machine health", "Sensor trends", "Dead letters",
                                            "Pipeline lag and throughput"}
    assert len({b["uid"] for b in boards}) == len(boards)
    for board in boards:
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in board["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0, (board["uid"], panel["title"])
            assert panel["targets"], panel["title"]
            for t in panel["targets"]:
                assert t["datasource"]["uid"] in UIDS, (board["uid"], panel["title"])
                assert UIDS[t["datasource"]["uid"]] == t["datasource"]["type"]


@pytest.fixture(scope="module")
def analyst(tmp_path_factory: pytest.TempPathFactory) -> Any:
    client = connect(f"chdb://{tmp_path_factory.mktemp('grafana') / 'clickhouse'}")
    migrate(client, ttl_days=30)
    client.command("INSERT INTO readings (tenant, site, machine, sensor, ts, value, unit, quality, "
                   "reading_id, gateway, ingest_time, archived_at, kafka_partition, kafka_offset, "
                   "kafka_run_first) VALUES "
                   f"('acme', 'p1', 'press-01', 'vib', '{AN_HOUR_AGO}', 3.5, 'mm/s', 192, 'r1', 'gw', "
                   f"'{AN_HOUR_AGO}', '{AN_HOUR_AGO}', 0, 1, 1), "
                   f"('beta', 'p9', 'press-01', 'vib', '{AN_HOUR_AGO}', 9.9, 'mm/s', 192, 'r2', 'gw', "
                   f"'{AN_HOUR_AGO}', '{AN_HOUR_AGO}', 0, 2, 2)")
    session = AnalystSession(client, Scope(tenant="acme"))
    yield session
    session.close()
    client.close()


@pytest.mark.parametrize("where,sql", clickhouse_queries(), ids=[q[0] for q in clickhouse_queries()])
def test_every_clickhouse_query_runs_read_only_for_one_tenant(analyst: Any, where: str, sql: str) -> None:
    table = analyst.arrow(expand(sql))
    if "AS time" in sql:  # a time series: its time column first, as Grafana expects
        assert table.column_names[0] == "time", where
    if "FROM readings " in sql or "FROM readings_1" in sql:
        assert table.num_rows >= 1, where  # acme's reading is seen (beta's row filtered out below)
    assert "beta" not in str(table.to_pylist()), where


def test_every_promql_query_names_a_metric_the_services_export() -> None:
    from prometheus_client import REGISTRY

    assert metrics  # imported: its metrics are registered
    exported = {f"{m.name}_total" if m.type == "counter" else m.name for m in REGISTRY.collect()}
    used = set()
    for board in dashboards():
        for panel in board["panels"]:
            for t in panel["targets"]:
                if "expr" in t:
                    used |= set(re.findall(r"plantstream_[a-z_]+", t["expr"]))
    assert used and used <= exported, used - exported
