"""``evtwin bench pipeline`` runs end to end on its own embedded stack and reports every figure the
README's performance table quotes. Numbers are not judged here (benchmarks, not tests), except the
claims the README draws from them: the pipeline scored every event (the bench fails otherwise),
latency percentiles are ordered, and the batched worker beats the one-event-at-a-time baseline."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import cli_env, run_cli

KEYS = ("events_per_s", "p50_ms", "p99_ms", "cpu_us_per_event", "naive_events_per_s",
        "relay_events_per_s", "two_replicas_events_per_s", "speedup_vs_naive",
        "steady_cpu_us_per_event")
STAGES = ("decode", "validate", "features", "state", "score", "encode", "produce", "alerts", "metrics", "faust")


def test_bench_pipeline_reports_every_figure(state_dir: Path, trained_model: Path) -> None:
    env = cli_env(state_dir, EVTWIN_MODEL_DIR=str(trained_model))
    result = run_cli(["bench", "pipeline", "--events", "3000", "--fleet", "60", "--naive-events", "200",
                      "--latency-rate", "500", "--latency-seconds", "2", "--json"], env, timeout=400)
    # Exit 0 also means both worker phases scored all 3000 events (it fails naming the logs if not).
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert isinstance(out[key], float) and out[key] > 0, (key, out[key])
    assert out["events"] == 3000 and out["batteries"] == 60
    assert out["p50_ms"] <= out["p99_ms"]
    stages = [out[f"{stage}_us_per_event"] for stage in STAGES]  # CPU per stage of one replica
    assert all(isinstance(v, float) and v >= 0 for v in stages), stages
    assert sum(stages[:-1]) > 0, out  # the worker's own stages were scraped from its metrics
    assert (abs(sum(stages) - out["steady_cpu_us_per_event"]) < 0.01 * out["steady_cpu_us_per_event"]
            or out["faust_us_per_event"] == 0.0)  # faust = the rest, never below 0
    # The README's headline: the batched worker is ~30x faster than scoring one event at a time;
    # a pipeline no faster than the naive loop is a regression whatever the machine.
    assert out["events_per_s"] > out["naive_events_per_s"], out
