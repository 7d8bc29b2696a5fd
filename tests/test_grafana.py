"""Grafana provisioning: every SQL query of every dashboard panel (and template variable) runs on the
real embedded PostgreSQL after the sink wrote realistic rows, with Grafana's macros expanded the way
Grafana's PostgreSQL data source expands them; every panel returns rows. PromQL panels pass
promtool's parser and use only the metrics of the contract. Grafana itself cannot be installed
here, so this is as close as it gets."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from connectors.sink_bench import make_predictions
from connectors.timescale import TimescaleWriter
from tests.test_prometheus import METRICS, metric_names, promtool
from tests.test_timescale import alert, drop_database, fresh_database, ms

REPO = Path(__file__).resolve().parent.parent
GRAFANA = REPO / "infra" / "grafana"
DASHBOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
PG_TYPE = "grafana-postgresql-datasource"
_MACRO = re.compile(r"\$(\w+)\(([^)]*)\)")  # as in Grafana's pkg/tsdb/grafana-postgresql-datasource


def _seconds(interval: str) -> float:
    value, unit = re.fullmatch(r"'?(\d+(?:\.\d+)?)(ms|s|m|h|d)'?", interval.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expand(raw: str, variables: dict[str, str], start: datetime, end: datetime,
           interval: str = "1m") -> str:
    """Interpolate template variables, then Grafana's PostgreSQL macros (``timescaledb: false``)."""
    def variable(match: re.Match[str]) -> str:
        name, fmt = match.group(1) or match.group(3), match.group(2)
        value = variables[name]
        return "'" + value.replace("'", "''") + "'" if fmt == "sqlstring" else value

    sql = raw.replace("$__interval_ms", str(int(_seconds(interval) * 1000)))
    sql = sql.replace("$__interval", interval)
    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)", variable, sql)

    def macro(match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{_rfc3339(start)}' AND '{_rfc3339(end)}'"
        if name == "__timeFrom":
            return f"'{_rfc3339(start)}'"
        if name == "__timeTo":
            return f"'{_rfc3339(end)}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            seconds = f"{_seconds(args[1]):g}"
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            return group + (' AS "time"' if name == "__timeGroupAlias" else "")
        if name == "__time":
            return f'{args[0]} AS "time"'
        raise AssertionError(f"macro ${name} is not expanded by this test; add it")

    sql = _MACRO.sub(macro, sql)
    assert "$" not in sql.replace("$$", ""), f"unexpanded variable or macro in:\n{sql}"
    return sql


def sql_targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == PG_TYPE:
                yield panel, target


def prom_targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["type"] == "prometheus":
                yield panel, target


@pytest.fixture(scope="module")
def dashboard_db(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh database filled by the sink: 3 packs, a reading every 30 s for the last 2 hours,
    one open and one resolved alert; the hourly rollup refreshed."""
    url = fresh_database(stack[1].database_url, "evtwin_grafana")
    now = datetime.now(UTC)
    start = ms(now - timedelta(hours=2))
    rows = make_predictions(3 * 240, batteries=3, start_ms=start, step_ms=30_000)
    with TimescaleWriter(url) as writer:
        assert writer.write_predictions(rows) == 720
        assert writer.write_alerts([
            alert("g-open", "BATTERY_00000", "OPENED", start + 3_600_000),
            alert("g-done", "BATTERY_00001", "OPENED", start + 600_000),
            alert("g-done", "BATTERY_00001", "RESOLVED", start + 600_000, start + 900_000),
        ]) == 2
        assert writer.refresh_rollup()
    yield url
    drop_database(url)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_sql_panel_returns_rows(dashboard_db: str, name: str) -> None:
    board = DASHBOARDS[name]
    end = datetime.now(UTC)
    start = end - timedelta(hours=6)  # the dashboards' default range
    variables: dict[str, str] = {}
    with psycopg.connect(dashboard_db) as conn:
        for var in board["templating"]["list"]:  # Grafana's default: the first value
            values = conn.execute(expand(var["query"], {}, start, end)).fetchall()
            assert values, f"{name}: variable {var['name']} has no values"
            variables[var["name"]] = str(values[0][0])
        checked = 0
        for panel, target in sql_targets(board):
            query = expand(target["rawSql"], variables, start, end)
            try:
                cur = conn.execute(query)
            except psycopg.Error as exc:
                pytest.fail(f"{name} / {panel['title']}: {exc}\n{query}")
            rows = cur.fetchall()
            columns = [c.name for c in cur.description or []]
            assert rows, f"{name} / {panel['title']} returned no rows:\n{query}"
            if target["format"] == "time_series":
                assert "time" in columns, f"{name} / {panel['title']}: no time column"
            checked += 1
    assert checked >= 8


def test_prometheus_panels_parse_and_use_contract_metrics(tmp_path: Path) -> None:
    rules = []
    for name, board in DASHBOARDS.items():
        for panel, target in prom_targets(board):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$__interval", "1m")
            assert metric_names(expr) <= METRICS, f"{name} / {panel['title']}: {expr}"
            rules.append({"record": f"panel:{panel['id']}:{target['refId']}", "expr": expr})
    assert len(rules) >= 6
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr  # promtool parses every PromQL


def test_datasources_take_credentials_from_the_environment() -> None:
    text = (GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text()
    sources = {d["uid"]: d for d in DATASOURCES["datasources"]}
    pg = sources["evtwin-timescaledb"]
    assert pg["type"] == PG_TYPE and pg["url"] == "timescaledb:5432"
    assert (pg["user"], pg["secureJsonData"]["password"], pg["jsonData"]["database"]) == (
        "${POSTGRES_USER}", "${POSTGRES_PASSWORD}", "${POSTGRES_DB}")
    assert pg["jsonData"]["timescaledb"] is False  # macros expand to portable SQL (see the file)
    assert sources["evtwin-prometheus"]["url"] == "http://prometheus:9090"
    assert "change-me" not in text and "password:" in text


def test_dashboards_are_wired_as_provisioned() -> None:
    uids = {d["uid"]: d["type"] for d in DATASOURCES["datasources"]}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert set(DASHBOARDS) == {"fleet", "battery"}
    for name, board in DASHBOARDS.items():
        assert board["refresh"] == "5s" and board["uid"] == f"evtwin-{name}"
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in board["panels"]:
            for target in panel["targets"]:
                assert uids[target["datasource"]["uid"]] == target["datasource"]["type"]


def _panel(board: str, title: str) -> dict[str, Any]:
    return next(p for p in DASHBOARDS[board]["panels"] if p["title"] == title)


def test_the_battery_view_has_the_panels_the_issue_asks_for() -> None:
    board = DASHBOARDS["battery"]
    assert [v["name"] for v in board["templating"]["list"]] == ["battery"]
    kinds = {p["title"]: p["type"] for p in board["panels"]}
    assert kinds["State of charge"] == "timeseries" and kinds["Temperature"] == "heatmap"
    assert kinds["Failure risk"] == "gauge" and kinds["Charge cycles"] == "stat"
    assert kinds["Open alerts"] == "table"
    rul = _panel("battery", "Remaining useful life (P10 / P50 / P90)")
    assert rul["type"] == "gauge" and all(k in rul["targets"][0]["rawSql"] for k in ("rul_p10", "rul_p90"))
    soh = _panel("battery", "State of health trend")["fieldConfig"]["defaults"]
    assert [s["value"] for s in soh["thresholds"]["steps"]] == [None, 80]
    vi = _panel("battery", "Voltage and current")["fieldConfig"]["overrides"]
    assert {"id": "custom.axisPlacement", "value": "right"} in vi[0]["properties"]
    assert _panel("battery", "Power")["fieldConfig"]["defaults"]["custom"]["fillOpacity"] >= 30
    for panel, target in sql_targets(board):
        if "battery_state" in target["rawSql"] or "ev_telemetry" in target["rawSql"]:
            assert "${battery:sqlstring}" in target["rawSql"], panel["title"]


def test_the_fleet_view_shows_pipeline_throughput_and_lag() -> None:
    exprs = " ".join(t["expr"] for _, t in prom_targets(DASHBOARDS["fleet"]))
    for metric in ("evtwin_events_in_total", "evtwin_events_out_total", "evtwin_consumer_lag",
                   "evtwin_sink_rows_total", "evtwin_event_latency_seconds_bucket"):
        assert metric in exprs


def test_the_macro_expansion_matches_grafana() -> None:
    start = datetime(2025, 10, 20, 10, 0, tzinfo=UTC)
    end = start + timedelta(hours=1)
    got = expand("SELECT $__timeGroupAlias(time, $__interval), x FROM t WHERE $__timeFilter(time) "
                 "AND id = ${battery:sqlstring} AND $__timeFrom() < $__timeTo()", {"battery": "O'B"},
                 start, end, "5m")
    assert got == ("SELECT floor(extract(epoch from time)/300)*300 AS \"time\", x FROM t WHERE time "
                   "BETWEEN '2025-10-20T10:00:00.000000Z' AND '2025-10-20T11:00:00.000000Z' "
                   "AND id = 'O''B' AND '2025-10-20T10:00:00.000000Z' < '2025-10-20T11:00:00.000000Z'")
