"""Grafana provisioning: every SQL query of every dashboard panel (and template variable) runs on the
real embedded PostgreSQL after the sink wrote realistic rows, with Grafana's macros expanded the way
Grafana's PostgreSQL data source expands them; every panel returns rows. PromQL panels pass
promtool's parser and use only the metrics of the contract. Grafana itself cannot be installed
here, so this is as close as it gets."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from connectors.accuracy_store import AccuracyWriter
from connectors.sink_bench import make_predictions
from connectors.timescale import TimescaleWriter
from tests.support.database import drop_database, fresh_database
from tests.support.grafana import DASHBOARDS, expand, prom_targets, sql_targets
from tests.support.prometheus import METRICS, metric_names, promtool
from tests.support.sink_records import alert, ms


@pytest.fixture(scope="module")
def dashboard_db(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh database filled by the sinks: 3 packs, a reading every 30 s for the last 2 hours,
    one open and one resolved alert (the hourly rollup follows the writes); each reading joined with a
    ground truth by the accuracy job's writer (5-minute buckets), one pack with a detected fault."""
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
    pairs = [(r["timestamp"], r["battery_id"], r["event_id"], r["rul_cycles"], r["rul_p10"], r["rul_p90"],
              r["rul_cycles"] + 30.0, 30.0, r["rul_cycles"] + 30.0 <= r["rul_p90"], False, "none", None,
              r["failure_probability"], k % 10 == 0)
             for k, r in enumerate(rows)]
    with AccuracyWriter(url, bucket_s=300) as accuracy:
        assert len(accuracy.write(pairs, [("BATTERY_00001", "cooling_failure", start + 600_000,
                                           start + 660_000, 60.0, start + 660_000)])) == 720
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
