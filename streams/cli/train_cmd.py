"""``evtwin train`` (fit, evaluate on held-out batteries, add a version to the model registry, log
to MLflow), ``evtwin evaluate``, and ``evtwin model list | promote | rollback`` (the registry)."""

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
from streams.cli.data_cmd import DEFAULT_DATASET_DIR
from streams.settings import REPO_ROOT, Settings

DEFAULT_DATASET = DEFAULT_DATASET_DIR / "ev_fleet.parquet"
DEPRECATED_OUT = "EVTWIN_TRAIN_OUT"
"""Old variable of ``--out``/``--models``; EVTWIN_MODEL_DIR (what the workers read) replaces it."""
HEADLINE = ("rul_r2", "rul_mae_cycles", "rul_rmse_cycles", "rul_band_coverage", "failure_roc_auc",
            "failure_pr_auc", "failure_brier", "anomaly_auroc", "anomaly_auroc_observable",
            "anomaly_delay_days_median")
"""Metrics shown in the summary table (all of them go to metrics.json and MLflow)."""
LIST_METRICS = {"rul_r2": "RUL R²", "rul_band_coverage": "band cov.", "failure_roc_auc": "fail. AUC",
                "anomaly_auroc": "anom. AUC"}
"""Metrics shown per version by ``evtwin model list`` (key -> column)."""


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("train", help="train the RUL, failure and anomaly models",
                       description="Train the RUL band (XGBoost quantiles), failure (calibrated "
                       "XGBoost) and anomaly (IsolationForest, supervised XGBoost) models, evaluate "
                       "them on held-out batteries, add them to the model registry as a new candidate "
                       "version (current only with --promote) and log them to MLflow (registered; "
                       "the alias champion follows promotion). Without --dataset: "
                       f"{DEFAULT_DATASET.relative_to(REPO_ROOT)}, generated first when absent "
                       "(500 packs, ~1 min); with --quick: a small fleet simulated in memory (<1 min).")
    opt.env(p, "--dataset", "EVTWIN_TRAIN_DATASET", "dataset file or directory (generated fleet or "
            "the Kaggle CSV)", default=None, type=str)
    opt.setting(p, ("--model-dir", "--out"), "model_dir", f"model registry to add the version to ({DEPRECATED_OUT} is a "
                "deprecated alias of its variable)")
    opt.flag(p, "--promote", "EVTWIN_TRAIN_PROMOTE", "make the new version current: workers switch to it "
             "(default: it stays a candidate; `evtwin model promote` later)")
    opt.flag(p, "--quick", "EVTWIN_TRAIN_QUICK", "small simulated fleet and fewer trees: a usable "
             "model in under a minute (when no --dataset)")
    opt.env(p, "--batteries", "EVTWIN_TRAIN_BATTERIES", "packs to simulate when a fleet is "
            "generated (default 80 with --quick, else 500)", default=None, type=int)
    opt.env(p, "--seed", "EVTWIN_TRAIN_SEED", "seed of the simulation, split and models", default=0, type=int)
    opt.flag(p, "--no-mlflow", "EVTWIN_TRAIN_NO_MLFLOW", "do not log to MLflow")
    opt.setting(p, "--mlflow-tracking-uri", "mlflow_tracking_uri", "MLflow tracking URI")
    opt.flag(p, "--quiet", "EVTWIN_TRAIN_QUIET", "no progress bar")
    p.set_defaults(handler=run_train, deprecated_out=opt.environ.get(DEPRECATED_OUT))

    e = sub.add_parser("evaluate", help="re-score the saved models on a dataset",
                       description="Score a dataset with the saved models (the live scoring path) "
                       "and print the metrics of training. Use a dataset the models have not seen "
                       "(another seed): training rows would flatter them.")
    opt.env(e, "--dataset", "EVTWIN_EVALUATE_DATASET", "dataset file or directory", default=None, type=str)
    opt.setting(e, ("--model-dir", "--models"), "model_dir", f"model registry (or one model's directory; {DEPRECATED_OUT} "
                "is a deprecated alias of its variable)")
    opt.env(e, "--version", "EVTWIN_EVALUATE_VERSION", "version of the registry to score (default: the "
            "current one)", default=None, type=str)
    opt.flag(e, "--json", "EVTWIN_EVALUATE_JSON", "print JSON instead of a table")
    opt.env(e, "--plots", "EVTWIN_EVALUATE_PLOTS", "also write the evaluation plots (PNG) into this "
            "directory: RUL with its P10-P90 band, the physics baseline beside the model, failure "
            "calibration, anomaly ROC, per-pack fault detection; listed under plots", default=None, type=str)
    opt.flag(e, "--ceiling", "EVTWIN_EVALUATE_CEILING",
             "instead: what the dataset allows at all — RUL R² with more inputs, up to oracles (true "
             "SoH, future usage), the share of fault readings no single reading can show, and how "
             "early a fault can be seen (first reading after onset; its first-week trace against the "
             "pack's own normal) (generated datasets; fits five RUL models, minutes on 500 packs)")
    opt.env(e, "--train-dataset", "EVTWIN_EVALUATE_TRAIN_DATASET", "with --ceiling: fit on this dataset's "
            "training batteries and score every battery of --dataset (another seed: the quality bars' "
            "split) instead of --dataset's own held-out batteries", default=None, type=str)
    e.set_defaults(handler=run_evaluate, deprecated_out=opt.environ.get(DEPRECATED_OUT))

    m = sub.add_parser("model", help="the model registry: list versions, promote one, roll back",
                       description="The model registry (EVTWIN_MODEL_DIR): every `evtwin train` adds a "
                       "version as a candidate; workers load the current one and switch within "
                       "EVTWIN_MODEL_POLL_S seconds when it changes. Promotion also moves the MLflow "
                       "alias champion when the version was logged there.")
    msub = m.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="list the versions: status, created at, held-out metrics",
                         description="List the versions of the model registry, oldest first.")
    opt.setting(ls, "--model-dir", "model_dir", "model registry")
    opt.flag(ls, "--json", "EVTWIN_MODEL_LIST_JSON", "print JSON instead of a table")
    ls.set_defaults(handler=run_model_list)
    pr = msub.add_parser("promote", help="make a version current (default: the newest candidate)",
                         description="Make a version current: workers switch to it at their next poll. "
                         "A version that does not load with this code is refused.")
    pr.add_argument("version", nargs="?", default=None,
                    help="version to make current, v3 or 3 (default: the newest candidate)")
    rb = msub.add_parser("rollback", help="make the previously current version current again",
                         description="Make the version that was current before the current one "
                         "current again (repeat to go further back).")
    for q, handler in ((pr, run_model_promote), (rb, run_model_rollback)):
        opt.setting(q, "--model-dir", "model_dir", "model registry")
        opt.flag(q, "--no-mlflow", "EVTWIN_MODEL_NO_MLFLOW", "leave the MLflow alias champion alone")
        opt.setting(q, "--mlflow-tracking-uri", "mlflow_tracking_uri", "MLflow tracking URI")
        q.set_defaults(handler=handler)


def model_dir(args: argparse.Namespace, settings: Settings) -> Path:
    """The model registry: ``--out``/``--models``, else EVTWIN_MODEL_DIR (what the workers read),
    else the deprecated EVTWIN_TRAIN_OUT, else the default of the setting."""
    old = getattr(args, "deprecated_out", None)
    if getattr(args, "model_dir", None) is not None or not old:
        return settings.model_dir
    if "model_dir" in settings.model_fields_set and Path(old) != settings.model_dir:
        raise CliError(f"{DEPRECATED_OUT}={old} and EVTWIN_MODEL_DIR={settings.model_dir} differ: "
                       f"unset {DEPRECATED_OUT} (deprecated; workers read EVTWIN_MODEL_DIR)")
    print(f"evtwin: warning: {DEPRECATED_OUT} is deprecated; set EVTWIN_MODEL_DIR (the workers read "
          "it) instead", file=sys.stderr)
    return Path(old)


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

    out = model_dir(args, settings)
    dataset = _dataset(args)
    uri = None if args.no_mlflow else settings.mlflow_uri
    console = Console(stderr=True)
    options: dict[str, Any] = dict(quick=args.quick, seed=args.seed, batteries=args.batteries,
                                   tracking_uri=uri, log_mlflow=uri is not None, promote=args.promote)
    try:
        if args.quiet:
            result = train(dataset, out, **options)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as bar:
                task = bar.add_task("training", total=len(STEPS))
                result = train(dataset, out, **options,
                               on_step=lambda s: bar.update(task, completed=STEPS.index(s),
                                                            description=f"training: {s}"))
                bar.update(task, completed=len(STEPS), description="training: done")
    except (TrainingError, ModelError) as exc:
        raise CliError(str(exc)) from None
    console.print(_table(result.metrics, f"{result.version} in {result.seconds:.0f} s, held-out batteries"))
    where = f"; MLflow run {result.run_id} at {uri}" if result.run_id else ""
    name = result.registry_version
    if result.promotion is None:
        _say(f"wrote candidate {name} to {result.model_dir}{where}; make it current with "
             f"`evtwin model promote {name}`")
    else:
        _say(f"wrote {name} to {result.model_dir}{where}")
        _report_promotion(result.promotion, out, settings.model_poll_s)
    return 0


def _table(metrics: dict[str, float], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in HEADLINE:
        if key in metrics:
            table.add_row(key, "n/a" if math.isnan(metrics[key]) else f"{metrics[key]:.4g}")
    return table


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """NaN as null (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import ModelError
    from models.registry import get_version
    from training.errors import TrainingError
    from training.evaluate import evaluate_saved

    if not args.dataset:
        raise CliError("--dataset is required (or EVTWIN_EVALUATE_DATASET)")
    if args.ceiling and args.plots:
        raise CliError("--plots does not apply to --ceiling (drop one of them, or unset EVTWIN_EVALUATE_PLOTS)")
    if args.train_dataset and not args.ceiling:
        raise CliError("--train-dataset applies to --ceiling only (add --ceiling, or unset "
                       "EVTWIN_EVALUATE_TRAIN_DATASET)")
    try:
        if args.ceiling:
            from training.ceiling import ceiling_report

            report = ceiling_report(Path(args.dataset),
                                    train_dataset=Path(args.train_dataset) if args.train_dataset else None)
        else:
            models = model_dir(args, settings)
            if args.version:
                models = get_version(models, args.version).path
            report = evaluate_saved(Path(args.dataset), models, Path(args.plots) if args.plots else None)
    except (TrainingError, ModelError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(dict(report, metrics=_clean(report["metrics"])), indent=2))
    elif args.ceiling:
        scored = (f"all {report['test_batteries']} batteries, fitted on {report['train_dataset']}"
                  if report["train_dataset"] else f"{report['test_batteries']} held-out batteries")
        table = Table(title=f"What {report['dataset']} allows ({scored})")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key, value in report["metrics"].items():
            table.add_row(key, f"{value:.4g}")
        Console().print(table)
    else:
        title = f"{report['model_version']} on {report['dataset']} ({report['rows']} rows)"
        Console().print(_table(report["metrics"], title))
    if report.get("plots") and not args.json:
        _say(f"wrote {len(report['plots'])} plots to {args.plots}: "
             + ", ".join(Path(p).name for p in report["plots"]))
    return 0


def run_model_list(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import ModelError
    from models.registry import list_versions

    root = settings.model_dir
    try:
        versions = list_versions(root)
    except ModelError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps([{"version": v.name, "status": v.status, "gate": v.gate, "created_at": v.created_at,
                           "promoted_at": v.promoted_at, "retired_at": v.retired_at,
                           "model_version": v.model_version, "path": str(v.path),
                           "quick": v.card.get("quick"), "metrics": _clean(v.metrics)}
                          for v in versions], indent=2))
        return 0
    if not versions:
        raise CliError(f"no model in {root}; train one with `evtwin train --quick --promote` (~1 min)")
    table = Table(title=f"Model registry {root}")
    for column in ("version", "status", "created"):
        table.add_column(column, no_wrap=True)
    table.add_column("model")
    for column in LIST_METRICS.values():
        table.add_column(column, justify="right")
    for v in versions:
        created = (v.created_at or "?").replace("T", " ")[:16]  # minutes, UTC
        model = v.model_version + (" quick" if v.card.get("quick") else "")
        values = [v.metrics.get(k) for k in LIST_METRICS]
        status = v.status + (" (gate: rejected)" if v.gate == "rejected" and v.status == "candidate" else "")
        table.add_row(v.name, status, created, model,
                      *("n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"
                        for x in values))
    Console().print(table)
    return 0


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _report_promotion(result: Any, root: Path, poll_s: float) -> None:
    """One line for the pointer, one for MLflow when it was involved."""
    promotion = result.promotion
    now = promotion.current
    if promotion.changed:
        was = f" (was {promotion.previous})" if promotion.previous else ""
        _say(f"{now.name} ({now.model_version}) is now current in {root}{was}; workers switch within "
             f"{poll_s:g} s")
    else:
        _say(f"{now.name} is already current in {root}")
    if result.mlflow:
        _say(("warning: " if result.mlflow_failed else "") + result.mlflow)


def run_model_promote(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import ModelError
    from training.errors import TrainingError
    from training.promotion import promote

    uri = None if args.no_mlflow else settings.mlflow_uri
    try:
        result = promote(settings.model_dir, args.version, tracking_uri=uri)
    except (ModelError, TrainingError) as exc:
        raise CliError(str(exc)) from None
    _report_promotion(result, settings.model_dir, settings.model_poll_s)
    return 0


def run_model_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from models.errors import ModelError
    from training.errors import TrainingError
    from training.promotion import rollback

    uri = None if args.no_mlflow else settings.mlflow_uri
    try:
        result = rollback(settings.model_dir, tracking_uri=uri)
    except (ModelError, TrainingError) as exc:
        raise CliError(str(exc)) from None
    _report_promotion(result, settings.model_dir, settings.model_poll_s)
    return 0
