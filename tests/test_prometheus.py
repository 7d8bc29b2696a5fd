"""Prometheus configuration: promtool validates the scrape config and the alert rules and runs the
rules' unit tests; the rules and scrape jobs agree with the metric contract and the compose stack.

promtool comes with Debian's ``prometheus`` package (``apt-get install -y prometheus``); without it
these tests fail and say so: they are never skipped."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROM_DIR = REPO / "infra" / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))

#: The metrics our services export (the contract with streams/; histograms by base name).
METRICS = {
    "battery_rul_prediction", "battery_failure_probability", "battery_soc", "battery_soh",
    "battery_temperature", "predictions_total", "evtwin_events_in_total", "evtwin_events_out_total",
    "evtwin_dead_letters_total", "evtwin_sink_rows_total", "evtwin_sink_db_errors_total",
    "evtwin_mqtt_buffer_dropped_total", "evtwin_batch_size", "evtwin_scoring_seconds",
    "evtwin_event_latency_seconds", "evtwin_consumer_lag",
}
HISTOGRAMS = {"evtwin_batch_size", "evtwin_scoring_seconds", "evtwin_event_latency_seconds"}
#: Compose service → metrics port of each of our services.
SERVICE_PORTS = {"score-worker": 6066, "sink": 6067, "mqtt-bridge": 6068, "simulator": 6069}
_METRIC_TOKEN = re.compile(r"\b((?:battery|evtwin)_[a-z_]+|predictions_total)\b")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `apt-get install -y prometheus` (Debian's package "
                    "ships it); CI must install it too", pytrace=False)
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=PROM_DIR,
                            timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def metric_names(expr: str) -> set[str]:
    """Our metric names in a PromQL expression (histogram series folded to their base name)."""
    names = set()
    expr = re.sub(r"\{[^}]*\}|\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)  # labels
    for token in _METRIC_TOKEN.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", token)
        names.add(base if base in HISTOGRAMS else token)
    return names


def test_promtool_accepts_the_scrape_config() -> None:
    out = run_promtool("check", "config", str(CONFIG))
    assert f"{len(RULES)} rule files found" in out.stdout + out.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    assert RULES
    run_promtool("check", "rules", *map(str, RULES))


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert RULE_TESTS
    out = run_promtool("test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in out.stdout + out.stderr


def _alerts() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule]


def test_the_seed_alerts_are_there_with_their_thresholds() -> None:
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in _alerts()}
    assert "battery_failure_probability) > 0.8" in exprs["BatteryFailureRiskHigh"]
    assert "battery_soh) < 75" in exprs["BatterySohLow"]
    assert exprs["ServiceDown"] == "up == 0"
    assert exprs["SinkDatabaseErrors"] == "increase(evtwin_sink_db_errors_total[5m]) > 0"


def test_every_alert_has_a_unit_test_and_uses_only_contract_metrics() -> None:
    tested = {case["alertname"] for path in RULE_TESTS
              for test in yaml.safe_load(path.read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    for rule in _alerts():
        assert rule["alert"] in tested, f"{rule['alert']} has no promtool unit test"
        assert metric_names(rule["expr"]) <= METRICS, rule["expr"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_replica_of_every_service_is_scraped() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service, port in SERVICE_PORTS.items():
        sd = jobs[service]["dns_sd_configs"]
        assert sd == [{"names": [service], "type": "A", "port": port, "refresh_interval": "15s"}]
        assert service in compose and str(port) in compose[service].get("expose", []), service
        assert compose[service]["environment"]["EVTWIN_METRICS_PORT"] == str(port), service
    static = [t for job in jobs.values() for sc in job.get("static_configs", []) for t in sc["targets"]]
    for target in static:
        host = target.split(":")[0]
        assert host == "localhost" or host in compose, f"{target}: no such compose service"
    assert config["rule_files"] == ["rules/*.yml"]
