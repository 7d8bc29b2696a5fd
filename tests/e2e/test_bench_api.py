"""``evtwin bench api`` runs on its own embedded stack and reports every figure the README's API
table quotes. Numbers are not judged (benchmarks, not tests) except what the bench itself claims:
every pack is in the database (no 404 among the twin requests), every prediction produced during
the fan-out reached every WebSocket client exactly once (its minimal client counts them from the
frames it parses), nobody was dropped, and percentiles are ordered."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.support.cli import cli_env, run_cli


def test_bench_api_reports_every_figure(state_dir: Path) -> None:
    result = run_cli(["bench", "api", "--packs", "40", "--rows", "4000", "--clients", "5",
                      "--seconds", "1", "--ws-clients", "4", "--ws-rate", "400", "--ws-seconds", "2",
                      "--json"], cli_env(state_dir), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["rows_loaded"] == 4000
    for name in ("battery", "summary"):
        assert out[f"{name}_requests"] > 0 and out[f"{name}_errors"] == 0, out
        assert 0 < out[f"{name}_p50_ms"] <= out[f"{name}_p95_ms"] <= out[f"{name}_p99_ms"], out
    assert out["ws_predictions_produced"] >= 700, out  # ~400/s for 2 s, from its own process
    assert out["ws_delivered_fraction"] == 1.0 and out["ws_clients_dropped"] == 0, out
    assert all(math.isfinite(out[f"ws_delivery_{p}_ms"]) for p in ("p50", "p95", "p99")), out
    assert 0 < out["ws_delivery_p50_ms"] <= out["ws_delivery_p99_ms"] < 5000, out
    assert 50 < out["api_rss_peak_mb"] < 1000, out
