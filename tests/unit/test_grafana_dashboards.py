"""Grafana provisioning, read from the files: the data sources take their credentials from the
environment, every panel points at a provisioned data source, the dashboards have the panels the
issue asks for, and the macro expansion the query tests use matches Grafana's. (That every query
runs and returns rows is tests/integration/test_grafana_queries.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from tests.support.grafana import (
    DASHBOARDS,
    DATASOURCES,
    GRAFANA,
    PG_TYPE,
    expand,
    prom_targets,
    sql_targets,
)


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
