"""``evtwin worker``: one score-worker replica (run it N times; partitions rebalance)."""

from __future__ import annotations

import argparse
from typing import Any

from connectors.endpoints import resolve_endpoints
from streams.settings import Settings


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("worker", help="run one score-worker replica (Faust agent score_telemetry)",
                       description="Run one score-worker replica: consume ev.telemetry.v1 in "
                       "micro-batches, score every event (RUL with band, failure probability, "
                       "anomaly), emit predictions, alerts and dead letters. Start it N times to "
                       "share the partitions; Ctrl-C or SIGTERM stops it cleanly.")
    add_worker_options(p, opt)
    opt.setting(p, "--metrics-port", "metrics_port", "Prometheus /metrics port; 0 = none", type=int)
    p.set_defaults(handler=run)


def add_worker_options(p: argparse.ArgumentParser, opt: Any) -> None:
    opt.setting(p, "--app-id", "app_id", "Faust app id (= consumer group)")
    opt.setting(p, "--model-dir", "model_dir", "directory of the trained models")
    opt.setting(p, "--batch-size", "batch_size", "events per scoring micro-batch", type=int)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.scoring.worker import run_worker

    return run_worker(settings, resolve_endpoints(settings))  # a ModelError is one line (main)
