"""``evtwin retrain``: train a candidate on what the twin collected plus the generated dataset, gate
it against the champion on the same held-out rows, record the decision, promote only if it wins
(see ``training/retrain.py``). ``--every`` repeats it (what ``evtwin up`` runs when
``EVTWIN_RETRAIN_EVERY`` is set)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.cli import CliError
from streams.settings import Settings

log = logging.getLogger(__name__)


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser(
        "retrain", help="retrain on the collected data; promote only when the candidate beats the champion",
        description="Build a training set from the telemetry in the database joined with the "
        "simulator's ground truth (ev_ground_truth; `evtwin sink --kind groundtruth`) plus the "
        "generated dataset, train a candidate, score it and the current model on the same held-out "
        "batteries and recent window, and promote it only when it is not worse on any gated metric "
        "and better on the primary one (EVTWIN_RETRAIN_*). Every decision goes to the "
        "model_promotions table and to MLflow (experiment ev-twin-retrain).")
    opt.setting(p, "--model-dir", "model_dir", "model registry")
    opt.setting(p, "--dataset", "retrain_dataset", "generated dataset trained on besides the collected data")
    opt.setting(p, "--batteries", "retrain_batteries", "packs simulated when there is no dataset", type=int)
    opt.setting(p, "--window-h", "retrain_window_h", "recent window of collected data the gate uses, h",
                type=float)
    opt.setting(p, "--max-rows", "retrain_max_rows", "collected readings used at most", type=int)
    opt.env(p, "--seed", "EVTWIN_RETRAIN_SEED", "seed of the simulated fleet and the models", default=0, type=int)
    opt.flag(p, "--quick", "EVTWIN_RETRAIN_QUICK", "coarser simulated fleet and fewer trees (minutes -> seconds)")
    opt.flag(p, "--no-database", "EVTWIN_RETRAIN_NO_DATABASE",
             "train on the generated dataset only and record the decision nowhere but MLflow")
    opt.flag(p, "--no-mlflow", "EVTWIN_RETRAIN_NO_MLFLOW", "log nothing to MLflow")
    opt.setting(p, "--mlflow-tracking-uri", "mlflow_tracking_uri", "MLflow tracking URI")
    opt.flag(p, "--json", "EVTWIN_RETRAIN_JSON", "print the decision as JSON on stdout")
    opt.setting(p, "--every", "retrain_every", "repeat every this long (30d, 12h, 90m, seconds); 0 = once")
    p.set_defaults(handler=run_retrain)


def _database_url(args: argparse.Namespace, settings: Settings) -> str | None:
    """The database with the collected data, migrated; None with --no-database."""
    if args.no_database:
        return None
    from connectors.endpoints import Endpoints

    if settings.database_url is not None:  # retraining needs the database alone, not the broker
        url: str | None = settings.database_url.get_secret_value()
    else:
        running = Endpoints.read(settings.stack_file)
        url = running.database_url if running else None
    if not url:
        raise CliError("no database: start the stack (`evtwin up`), set EVTWIN_DATABASE_URL, or pass "
                       "--no-database to retrain on the generated dataset only")
    import psycopg

    from connectors.migrator import migrate

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            migrate(conn)
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot reach the database: {str(exc).strip().splitlines()[0]} (is the stack "
                       "running? `evtwin up`)") from None
    return url


def config(args: argparse.Namespace, settings: Settings, database_url: str | None, trigger: str) -> Any:
    """The :class:`training.retrain.RetrainConfig` of the settings and options."""
    from training.gate import Thresholds
    from training.retrain import RetrainConfig

    thresholds = Thresholds.parse(settings.retrain_primary_metric, settings.retrain_gated_metrics,
                                  settings.retrain_max_regression, settings.retrain_min_improvement)
    dataset = settings.retrain_dataset
    if dataset is None:
        from streams.cli.train_cmd import DEFAULT_DATASET

        dataset = DEFAULT_DATASET if DEFAULT_DATASET.exists() and not args.quick else None
    elif not Path(dataset).exists():
        raise CliError(f"no dataset at {dataset}; generate one with `evtwin dataset generate --out {dataset}`")
    uri = None if args.no_mlflow else settings.mlflow_uri
    return RetrainConfig(
        model_dir=settings.model_dir, database_url=database_url, thresholds=thresholds, dataset=dataset,
        batteries=settings.retrain_batteries, seed=args.seed, quick=args.quick,
        window_h=settings.retrain_window_h, holdout=settings.retrain_holdout,
        max_rows=settings.retrain_max_rows, sample_s=settings.retrain_sample_s, tracking_uri=uri,
        log_models=uri is not None, trigger=trigger)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _report(result: Any, settings: Settings) -> None:
    console = Console(stderr=True)
    table = Table(title=f"Gate: candidate {result.candidate} vs champion {result.champion or 'none'} on "
                  f"{result.eval_rows} rows of {result.eval_batteries} held-out batteries")
    for column in ("metric", "candidate", "champion", "change", "verdict"):
        table.add_column(column, justify="left" if column in ("metric", "verdict") else "right")
    for c in result.gate.checks:
        change = "n/a" if math.isnan(c.change) else f"{c.change:+.1%}"
        table.add_row(c.metric, _fmt(c.candidate), _fmt(c.champion), change, c.note)
    if result.gate.checks:
        console.print(table)
    where = f"{settings.model_dir}"
    if result.promoted:
        print(f"promoted {result.candidate} ({result.candidate_model_version}): {result.reason}; now current "
              f"in {where}, workers switch within {settings.model_poll_s:g} s", file=sys.stderr)
    else:
        print(f"rejected {result.candidate}: {result.reason}; {result.current or 'nothing'} stays current "
              f"(the candidate stays in the registry)", file=sys.stderr)
    if result.mlflow_note:
        print(result.mlflow_note, file=sys.stderr)


def _once(args: argparse.Namespace, settings: Settings, trigger: str) -> Any:
    from models.errors import ModelError
    from training.errors import TrainingError
    from training.retrain import retrain

    try:
        cfg = config(args, settings, _database_url(args, settings), trigger)
        return retrain(cfg)
    except (TrainingError, ModelError) as exc:
        raise CliError(str(exc)) from None


def run_retrain(args: argparse.Namespace, settings: Settings) -> int:
    every = settings.retrain_every
    if every <= 0:
        result = _once(args, settings, "cli")
        _report(result, settings)
        if args.json:
            print(json.dumps(result.as_dict(), indent=2))
        return 0
    print(f"retraining every {every:g} s (the first run in {every:g} s, when there is data)", file=sys.stderr)
    while True:  # a failed run is reported and tried again at the next one: `up` keeps going
        time.sleep(every)
        try:
            result = _once(args, settings, "schedule")
            _report(result, settings)
            if args.json:
                print(json.dumps(result.as_dict()), flush=True)
        except CliError as exc:
            log.error("retraining failed: %s; next attempt in %g s", exc, every)


__all__ = ["config", "register", "run_retrain"]
