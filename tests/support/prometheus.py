"""The Prometheus configuration under infra/prometheus, the metric contract it may use, and
promtool (Debian's ``prometheus`` package; the tests that need it fail, never skip, without it)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.paths import REPO

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
    # the online-accuracy job (streams/sinks/accuracy.py)
    "evtwin_online_rul_mae_cycles", "evtwin_online_rul_band_coverage", "evtwin_online_window_pairs",
    "evtwin_online_battery_rul_mae_cycles", "evtwin_online_battery_rul_band_coverage",
    "evtwin_online_battery_window_pairs", "evtwin_online_battery_fault_detection_delay_seconds",
    "evtwin_online_fault_detection_delay_seconds", "evtwin_online_pairs_total",
    "evtwin_online_unmatched_total", "evtwin_online_fault_onsets_total", "evtwin_online_pending",
    "evtwin_online_unusable_predictions_total", "evtwin_online_failure_brier",
    "evtwin_online_failure_baseline_brier", "evtwin_online_failure_mean_probability",
    "evtwin_online_failure_observed_rate",
}
HISTOGRAMS = {"evtwin_batch_size", "evtwin_scoring_seconds", "evtwin_event_latency_seconds",
              "evtwin_online_fault_detection_delay_seconds"}
_METRIC_TOKEN = re.compile(r"\b((?:battery|evtwin)_[a-z_]+|predictions_total)\b")


def promtool() -> str:
    """The path of promtool; fails the test (with the install command) when it is missing."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `apt-get install -y prometheus` (Debian's package "
                    "ships it; `make system-deps` does it); CI must install it too", pytrace=False)
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` in infra/prometheus and assert that it succeeded."""
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
