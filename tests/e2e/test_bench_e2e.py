"""``evtwin bench e2e`` runs the whole pipeline on its own embedded stack and reports what the
README's end-to-end table quotes. Speed is not judged (a benchmark, not a test); what the bench
counts from the table is: every event sent became exactly one row."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.support.cli import cli_env, run_cli


def test_bench_e2e_counts_every_event_into_the_table(state_dir: Path, trained_model: Path) -> None:
    env = cli_env(state_dir, EVTWIN_MODEL_DIR=str(trained_model))
    result = run_cli(["bench", "e2e", "--fleet", "200", "--rate-hz", "2", "--seconds", "8",
                      "--warmup", "4", "--scaling", "1,2", "--json"], env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    both = json.loads(result.stdout.strip().splitlines()[-1])
    assert [row["workers"] for row in both["scaling"]] == [1, 2]
    assert both["scaling"][0]["ratio"] == 1.0
    assert both["scaling"][1]["ratio"] == both["runs"][1]["events_per_s"] / both["runs"][0]["events_per_s"]
    assert "cpu_cores.worker-1" in both["runs"][1] and "cpu_cores.worker-1" not in both["runs"][0]
    for out in both["runs"]:
        _check(out)


def _check(out: dict) -> None:  # type: ignore[type-arg]
    assert out["events_sent"] > 200 * 2 * 8 * 0.5, out  # the simulator ran for the window
    assert out["rows"] == out["events_sent"], out
    assert out["rows_lost"] == 0 and out["rows_duplicated"] == 0, out
    assert out["slices"] == 10, out  # each second sent in parts (the simulator's default)
    assert 1 <= len(out["row_p99_ms_timeline"]) == len(out["row_max_ms_timeline"]) <= 8 // out["row_timeline_s"] + 1, out
    assert out["events_per_s"] > 0 and math.isfinite(out["row_p99_ms"]), out
    assert out["row_p50_ms"] <= out["row_p99_ms"], out
    assert out["mqtt_messages"] > 0 and math.isfinite(out["mqtt_p50_ms"]), out
    for process in ("worker-0", "sink", "mqtt-bridge", "simulator", "kafka", "postgres"):
        assert out[f"peak_rss_mb.{process}"] > 10, (process, out)
        assert out[f"cpu_cores.{process}"] >= 0, (process, out)
