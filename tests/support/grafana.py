"""The Grafana provisioning under infra/grafana (dashboards, data sources) and the expansion of
Grafana's PostgreSQL macros, done the way Grafana's data source does it (Grafana itself cannot be
installed here)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import yaml

from tests.support.paths import REPO

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
