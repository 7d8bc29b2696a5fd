"""Prometheus configuration, read from the files: the seed alerts and their thresholds, every
alert unit-tested and using only contract metrics, every replica of every compose service scraped.
(promtool's own checks of the same files are tests/integration/test_promtool.py.)"""

from __future__ import annotations

import yaml

from tests.support.paths import REPO
from tests.support.prometheus import CONFIG, METRICS, RULE_TESTS, RULES, metric_names

#: Compose service → metrics port of each of our services.
SERVICE_PORTS = {"score-worker": 6066, "sink": 6067, "mqtt-bridge": 6068, "simulator": 6069,
                 "groundtruth-sink": 6072, "online-accuracy": 6073}


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
