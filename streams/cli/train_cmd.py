"""``evtwin train`` (fit, evaluate on held-out batteries, save, log to MLflow) and ``evtwin evaluate``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.cli import CliError
from streams.settings import REPO_ROOT, Settings

DEFAULT_DATASET = REPO_ROOT / "datasets" / "generated" / "ev_fleet.parquet"
DEFAULT_MODEL_DIR = REPO_ROOT / "models"
HEADLINE = ("rul_r2", "rul_mae_cycles", "rul_rmse_cycles", "rul_band_coverage", "failure_roc_auc",
            "failure_pr_auc", "failure_brier", "anomaly_auroc", "anomaly_auroc_observable",
            "anomaly_delay_days_median")
"""Metrics shown in the summary table (all of them go to metrics.json and MLflow)."""


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("train", help="train the RUL, failure and anomaly models",
                       description="Train the RUL band (XGBoost quantiles), failure (calibrated "
                       "XGBoost) and anomaly (IsolationForest, supervised XGBoost) models, evaluate "
                       "them on held-out batteries, write them atomically into the model directory and "
                       "log them to MLflow (registered, alias champion). Without --dataset: "
                       f"{DEFAULT_DATASET.relative_to(REPO_ROOT)}, generated first when absent "
                       "(500 packs, ~1 min); with --quick: a small fleet simulated in memory (<1 min).")
    opt.env(p, "--dataset", "EVTWIN_TRAIN_DATASET", "dataset file or directory (generated fleet or "
            "the Kaggle CSV)", default=None, type=str)
    opt.env(p, "--out", "EVTWIN_TRAIN_OUT", "model directory the agents load",
            default=str(DEFAULT_MODEL_DIR), type=str)
    opt.flag(p, "--quick", "EVTWIN_TRAIN_QUICK", "small simulated fleet and fewer trees: a usable "
             "model in under a minute (when no --dataset)")
    opt.env(p, "--batteries", "EVTWIN_TRAIN_BATTERIES", "packs to simulate when a fleet is "
            "generated (default 80 with --quick, else 500)", default=None, type=int)
    opt.env(p, "--seed", "EVTWIN_TRAIN_SEED", "seed of the simulation, split and models", default=0, type=int)
    opt.flag(p, "--no-mlflow", "EVTWIN_TRAIN_NO_MLFLOW", "do not log to MLflow")
    opt.setting(p, "--mlflow-tracking-uri", "mlflow_tracking_uri", "MLflow tracking URI")
    opt.flag(p, "--quiet", "EVTWIN_TRAIN_QUIET", "no progress bar")
    p.set_defaults(handler=run_train)

    e = sub.add_parser("evaluate", help="re-score the saved models on a dataset",
                       description="Score a dataset with the saved models (the live scoring path) "
                       "and print the metrics of training. Use a dataset the models have not seen "
                       "(another seed): training rows would flatter them.")
    opt.env(e, "--dataset", "EVTWIN_EVALUATE_DATASET", "dataset file or directory", default=None, type=str)
    opt.env(e, "--models", "EVTWIN_TRAIN_OUT", "model directory", default=str(DEFAULT_MODEL_DIR), type=str)
    opt.flag(e, "--json", "EVTWIN_EVALUATE_JSON", "print JSON instead of a table")
    opt.flag(e, "--ceiling", "EVTWIN_EVALUATE_CEILING",
             "instead: what the dataset allows at all — RUL R² with more inputs, up to oracles (true "
             "SoH, future usage), and the share of fault readings no single reading can show "
             "(generated datasets; fits four RUL models, minutes on 500 packs)")
    e.set_defaults(handler=run_evaluate)


def tracking_uri(settings: Settings) -> str:
    """The MLflow tracking URI: the setting, else a SQLite file in the state directory."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{(settings.state_dir / 'mlflow' / 'mlflow.db').resolve()}"


def _dataset(args: argparse.Namespace) -> Path | None:
    """The dataset to train on; generates the default one when needed (not with --quick)."""
    if args.dataset:
        path = Path(args.dataset)
        if not path.exists():
            raise CliError(f"no dataset at {path}; generate one with `evtwin dataset generate --out {path}`")
        return path
    if args.quick:
        return None
    if not DEFAULT_DATASET.exists():
        from datasets.generate import generate_dataset

        print(f"no dataset at {DEFAULT_DATASET}: generating it", file=sys.stderr)
        generate_dataset(args.batteries or 500, args.seed, DEFAULT_DATASET.parent, progress=not args.quiet)
    return DEFAULT_DATASET


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import ModelError
    from training.errors import TrainingError
    from training.train import STEPS, train

    dataset = _dataset(args)
    uri = None if args.no_mlflow else tracking_uri(settings)
    console = Console(stderr=True)
    try:
        if args.quiet:
            result = train(dataset, Path(args.out), quick=args.quick, seed=args.seed,
                           batteries=args.batteries, tracking_uri=uri, log_mlflow=uri is not None)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as bar:
                task = bar.add_task("training", total=len(STEPS))
                result = train(dataset, Path(args.out), quick=args.quick, seed=args.seed,
                               batteries=args.batteries, tracking_uri=uri, log_mlflow=uri is not None,
                               on_step=lambda s: bar.update(task, completed=STEPS.index(s),
                                                            description=f"training: {s}"))
                bar.update(task, completed=len(STEPS), description="training: done")
    except (TrainingError, ModelError) as exc:
        raise CliError(str(exc)) from None
    console.print(_table(result.metrics, f"{result.version} in {result.seconds:.0f} s, held-out batteries"))
    where = f"; MLflow run {result.run_id} at {uri}" if result.run_id else ""
    console.print(f"wrote {result.model_dir}{where}")
    return 0


def _table(metrics: dict[str, float], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in HEADLINE:
        if key in metrics:
            table.add_row(key, "n/a" if math.isnan(metrics[key]) else f"{metrics[key]:.4g}")
    return table


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import ModelError
    from training.errors import TrainingError
    from training.evaluate import evaluate_saved

    if not args.dataset:
        raise CliError("--dataset is required (or EVTWIN_EVALUATE_DATASET)")
    try:
        if args.ceiling:
            from training.ceiling import ceiling_report

            report = ceiling_report(Path(args.dataset))
        else:
            report = evaluate_saved(Path(args.dataset), Path(args.models))
    except (TrainingError, ModelError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in report["metrics"].items()}
        print(json.dumps(dict(report, metrics=clean), indent=2))
    elif args.ceiling:
        table = Table(title=f"What {report['dataset']} allows ({report['test_batteries']} held-out batteries)")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key, value in report["metrics"].items():
            table.add_row(key, f"{value:.4g}")
        Console().print(table)
    else:
        title = f"{report['model_version']} on {report['dataset']} ({report['rows']} rows)"
        Console().print(_table(report["metrics"], title))
    return 0
