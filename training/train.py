"""Train, evaluate on held-out batteries, add the model to the registry and (optionally) log to MLflow.

``train(None, "models", quick=True)`` simulates a small fleet in memory and writes a usable model in
well under a minute; ``train(path, "models")`` trains on a dataset file or directory (the generated
fleet or the Kaggle CSV). Each run adds a new version to the model registry at the given directory
(``models.registry``) as a *candidate*; ``promote=True`` also makes it current (workers switch to
it), as does ``training.promotion.promote`` later. Metrics are measured with the serving path itself
(``models.scorer.Scorer`` on ``models.features`` inputs) on batteries the models never saw.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.features import FEATURE_NAMES
from models.registry import FEATURES_FILE, add_version, save_artifacts
from models.scorer import (
    ANOMALY_XGB_FILE,
    CALIBRATOR_FILE,
    FAILURE_FILE,
    IFOREST_FILE,
    RUL_FILE,
    IForestDetector,
    Scorer,
)
from training import data, evaluate, fit
from training.errors import TrainingDataError, TrainingError
from training.promotion import PromotionResult
from training.promotion import promote as make_current

STEPS: tuple[str, ...] = ("data", "split", "rul", "failure", "anomaly", "evaluate", "mlflow", "save")
"""Stages reported to ``on_step`` (in order; ``save`` adds the version and, if asked, promotes it)."""
DEFAULT_BATTERIES = 500
"""Batteries generated when no dataset is given (full run)."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        model_dir: The new version's directory (a complete model).
        version: The model's own version (``ev-twin@<n>`` when logged to MLflow, else
            ``file:<sha256[:12]>``); predictions carry it as ``model_version``.
        metrics: Held-out metrics.
        card: The model card as written.
        run_id: The MLflow run, or None.
        seconds: Wall time of the run.
        registry_version: Its name in the registry (``v3``).
        promotion: What promoting it did (``promote=True``), else None: it is a candidate.
    """

    model_dir: Path
    version: str
    metrics: dict[str, float]
    card: dict[str, Any]
    run_id: str | None
    seconds: float
    registry_version: str = ""
    promotion: PromotionResult | None = None


def _load_data(dataset: Path | str | data.TrainingData | None, quick: bool, seed: int,
               batteries: int | None) -> data.TrainingData:
    """The dataset at ``dataset`` (or already loaded), or a fleet simulated in memory."""
    if isinstance(dataset, data.TrainingData):
        return dataset
    if dataset is not None:
        return data.load(Path(dataset))
    n = batteries or (data.QUICK_BATTERIES if quick else DEFAULT_BATTERIES)
    return data.generate(n, seed, quick=quick)


def _fit_all(td: data.TrainingData, split: data.Split, hp: fit.HyperParams,
             step: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit every model on the training part; on the calibration part, conformalise the RUL band,
    calibrate the failure probability and pick the anomaly detector.

    Returns:
        ``(objects, choices)``: artifacts by file name, and card entries (band offset, detector).
    """
    X, tr, cal = td.X, split.train, split.calib
    X_tr, at = X[tr], tr  # the training rows, with the mid-life attaches (their labels' rows in ``at``)
    if hp.attach_replays and td.kind == "ev_fleet" and split.by == "battery":
        X_att, att = data.attach_replays(td, tr, hp.seed)
        X_tr, at = np.concatenate([X_tr, X_att]), np.concatenate([tr, att])
    step("rul")
    has_rul = np.isfinite(td.rul[at])
    if not has_rul.any():
        raise TrainingDataError(f"{td.source}: no finite RUL label in the training part")
    rul_model = fit.fit_rul(X_tr[has_rul], td.rul[at][has_rul], hp)
    objects: dict[str, Any] = {RUL_FILE: rul_model}
    ok = np.isfinite(td.rul[cal])
    offset = fit.conformal_offset(rul_model, X[cal][ok], td.rul[cal][ok], hp.rul_log)
    step("failure")
    # A fleet replaces a pack some time after a fault; the dataset's packs run on with it to end of
    # life. Those rows weigh little in the fit and nothing in the calibration (data.fleet_weights).
    fleet = data.fleet_weights(td.frame) if td.kind == "ev_fleet" else None
    fit_weight = None if fleet is None else np.where(fleet[at] > 0, 1.0, hp.failure_repaired_weight)
    clf = fit.fit_classifier(X_tr, td.failure[at], hp.failure_trees, hp.failure_depth, hp, weight=fit_weight)
    objects[FAILURE_FILE] = clf
    # calibrated for a fleet in service, not for the dataset's sampling and its long-running faults
    calib_weight = None if fleet is None else fleet[cal]
    objects[CALIBRATOR_FILE] = fit.fit_calibrator(clf.predict_proba(X[cal])[:, 1], td.failure[cal], calib_weight)
    step("anomaly")
    objects[IFOREST_FILE] = fit.fit_iforest(X[tr], hp)
    detector = "iforest"
    labels = td.anomaly

    def fit_detector(rows: np.ndarray) -> Any:
        """The supervised fault detector on ``rows``, without the readings of traceless faults."""
        assert labels is not None
        seen = rows[~td.silent[rows]]
        return fit.fit_classifier(X[seen], labels[seen], hp.anomaly_trees, hp.anomaly_depth, hp,
                                  blind=hp.anomaly_blind)

    if labels is not None and labels[tr].any() and labels[cal].any():
        from sklearn.metrics import roc_auc_score

        seen_cal = cal[~td.silent[cal]]
        xgb_det = objects[ANOMALY_XGB_FILE] = fit_detector(tr)
        y_cal = labels[seen_cal]
        auc_xgb = roc_auc_score(y_cal, xgb_det.predict_proba(X[seen_cal])[:, 1])
        auc_if = roc_auc_score(y_cal, IForestDetector(objects[IFOREST_FILE]).raw(X[seen_cal]))
        detector = "xgb" if auc_xgb > auc_if else "iforest"
    objects[FEATURES_FILE] = list(FEATURE_NAMES)
    choices: dict[str, Any] = {"anomaly_detector": detector, "rul_band_offset": offset}
    if td.kind == "ev_fleet":  # the battery-level fault flag: thresholds from packs not fitted on
        card = {**choices, "rul_transform": "log1p" if hp.rul_log else "none"}
        rows, anomaly = [cal], [Scorer(card, objects, "").score(X[cal])["anomaly_score"]]
        k = min(hp.threshold_folds, len(np.unique(td.groups[tr])))
        if detector == "xgb" and labels is not None and k >= 2:
            from sklearn.model_selection import GroupKFold

            folds = GroupKFold(n_splits=k, shuffle=True, random_state=hp.seed).split(tr, groups=td.groups[tr])
            for rest, fold in folds:
                rest, fold = tr[rest], tr[fold]  # by battery; each fold's rows stay in time order
                y = labels[rest[~td.silent[rest]]]
                if y.all() or not y.any():
                    continue  # a tiny fleet: this fold's complement has one class only
                det = fit_detector(rest)
                rows.append(fold)
                anomaly.append(Scorer(card, {**objects, ANOMALY_XGB_FILE: det}, "").score(X[fold])["anomaly_score"])
        choices["fault_score_open"], choices["fault_score_clear"] = evaluate.choose_fault_thresholds(
            np.concatenate(anomaly), td.frame.iloc[np.concatenate(rows)])
    return objects, choices


def _evaluate(scorer: Scorer, objects: dict[str, Any], td: data.TrainingData,
              split: data.Split) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Held-out metrics of the serving path; the non-selected anomaly detector is reported too."""
    te = split.test
    out = scorer.score(td.X[te])
    frame = td.frame.iloc[te] if td.anomaly is not None else None
    metrics = evaluate.score_metrics(out, td.rul[te], td.failure[te], frame, float(np.mean(td.rul[split.train])))
    metrics.update(evaluate.physics_baseline_metrics(td.X[te], td.rul[te]))
    if frame is not None and "fault_score_open" in scorer.card:
        metrics.update(evaluate.fault_pack_metrics(out["anomaly_score"], frame, scorer.card["fault_score_open"],
                                                   scorer.card["fault_score_clear"]))
    if frame is not None:
        metrics.update(evaluate.anomaly_metrics(IForestDetector(objects[IFOREST_FILE]).raw(td.X[te]),
                                                frame, prefix="iforest"))
        if ANOMALY_XGB_FILE in objects:
            p = objects[ANOMALY_XGB_FILE].predict_proba(td.X[te])[:, 1]
            metrics.update(evaluate.anomaly_metrics(p, frame, prefix="xgb_detector"))
    return metrics, out


def _card(td: data.TrainingData, split: data.Split, hp: fit.HyperParams, choices: dict[str, Any],
          quick: bool) -> dict[str, Any]:
    """Model card (without version and file hashes)."""
    return {
        "name": "ev-twin", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "feature_names": list(FEATURE_NAMES), **choices,
        "rul_transform": "log1p" if hp.rul_log else "none", "rul_quantiles": list(fit.QUANTILES),
        "rul_train_mean": float(np.mean(td.rul[split.train])),
        "dataset": {"kind": td.kind, "source": td.source, "sha256": td.sha256, "rows": len(td.X),
                    "batteries": int(len(np.unique(td.groups)))},
        "split": {"by": split.by, "train_rows": len(split.train), "calib_rows": len(split.calib),
                  "test_rows": len(split.test)},
        "hyperparameters": hp.as_params(), "quick": quick,
    }


def _plots(plot_dir: Path, objects: dict[str, Any], td: data.TrainingData, split: data.Split,
           card: dict[str, Any]) -> Path | None:
    """PNG plots of the held-out evaluation in ``plot_dir`` (None when matplotlib is absent)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from training import plots

    te = split.test
    X, y_fail = td.X[te], td.failure[te]
    plot_dir.mkdir(parents=True, exist_ok=True)
    q = fit.predict_rul(objects[RUL_FILE], X, card["rul_transform"] == "log1p", card["rul_band_offset"])
    plots.rul_plot(plot_dir / "rul_pred_vs_true.png", td.rul[te], q)
    if 0 < y_fail.sum() < len(y_fail):
        raw = objects[FAILURE_FILE].predict_proba(X)[:, 1]
        cal = objects[CALIBRATOR_FILE].predict(raw)
        plots.calibration_plot(plot_dir / "failure_calibration.png", y_fail, {"raw": raw, "isotonic": cal})
    models = {"rul": objects[RUL_FILE], "failure": objects[FAILURE_FILE]}
    if ANOMALY_XGB_FILE in objects:
        models["anomaly (xgb)"] = objects[ANOMALY_XGB_FILE]
    plots.importance_plot(plot_dir / "feature_importance.png", FEATURE_NAMES, models)
    return plot_dir


def _log_mlflow(uri: str, objects: dict[str, Any], card: dict[str, Any], metrics: dict[str, float],
                plot_dir: Path | None, example: np.ndarray) -> Any:
    """Stage the model in a temporary directory, log it to MLflow; the ``tracking.LoggedRun``."""
    from training.tracking import log_run

    with tempfile.TemporaryDirectory(prefix="evtwin-stage-") as tmp:
        staged = Path(tmp) / "model"
        save_artifacts(staged, objects, card, metrics)
        return log_run(uri, objects, card, metrics, staged, plot_dir, example)


def train(dataset: Path | str | data.TrainingData | None, out_dir: Path | str, quick: bool = False, *,
          seed: int = 0, batteries: int | None = None, hp: fit.HyperParams | None = None,
          tracking_uri: str | None = None, log_mlflow: bool = False, promote: bool = False,
          on_step: Callable[[str], None] | None = None) -> TrainResult:
    """Train every model, evaluate it on held-out batteries and add it to the registry ``out_dir``.

    Args:
        dataset: Dataset file or directory (generated fleet or Kaggle CSV), or data already loaded
            (``training.data.TrainingData``); None = simulate a fleet in memory (``batteries``
            packs; 80 with ``quick``, else 500).
        out_dir: Model registry (``EVTWIN_MODEL_DIR`` for the live agents): the model becomes a new
            version there (``versions/v<n>/``, written atomically), a candidate.
        quick: Small, coarser simulated fleet and fewer trees: a usable model in < 1 min.
        seed: Seed of the simulation, the split and the models.
        batteries: Packs to simulate when ``dataset`` is None.
        hp: Hyper-parameters (default ``fit.QUICK`` with ``quick``, else ``fit.HyperParams()``).
        tracking_uri: MLflow tracking URI; required with ``log_mlflow``, and where a promotion
            moves the alias ``champion``.
        log_mlflow: Log params, metrics, plots and models to MLflow and register them (no alias).
        promote: Make the new version current (and, when logged, alias it ``champion``).
        on_step: Called with each stage name of :data:`STEPS` as it starts (progress display).

    Returns:
        The :class:`TrainResult`.

    Raises:
        TrainingDataError: If the dataset is absent or unusable.
        TrainingError: If ``log_mlflow`` without a ``tracking_uri``, or MLflow fails.
        ModelError: If the artifacts cannot be written.
    """
    if log_mlflow and not tracking_uri:
        raise TrainingError("log_mlflow needs a tracking_uri (the CLI passes EVTWIN_MLFLOW_TRACKING_URI "
                            "or its default)")
    start = time.perf_counter()
    step = on_step or (lambda _name: None)
    hp = hp or (fit.QUICK if quick else fit.HyperParams())
    hp = dataclasses.replace(hp, seed=seed)
    step("data")
    td = _load_data(dataset, quick, seed, batteries)
    step("split")
    split = data.split_rows(td.groups, seed=seed, strata=td.anomaly)
    if split.by == "battery" and min(len(split.train), len(split.calib), len(split.test)) == 0:
        raise TrainingDataError(f"{len(np.unique(td.groups))} batteries are too few to hold some out "
                                "for calibration and testing (need >= 5, better >= 40)")
    objects, choices = _fit_all(td, split, hp, step)
    step("evaluate")
    card = _card(td, split, hp, choices, quick)
    scorer = Scorer(card, objects, "")
    metrics, _ = _evaluate(scorer, objects, td, split)
    card["metrics"] = metrics
    with tempfile.TemporaryDirectory(prefix="evtwin-plots-") as tmp:
        plot_dir = _plots(Path(tmp), objects, td, split, card)
        run_id = None
        step("mlflow")
        if log_mlflow:
            assert tracking_uri is not None
            logged = _log_mlflow(tracking_uri, objects, card, metrics, plot_dir, td.X[split.test[:200]])
            run_id, card["version"] = logged.run_id, logged.version
            card["mlflow_run_id"], card["mlflow_registered"] = run_id, logged.registered
        step("save")
        version = add_version(Path(out_dir), objects, card, metrics, attachments=plot_dir)
    promotion = None
    if promote:
        promotion = make_current(Path(out_dir), version.name, tracking_uri=tracking_uri)
    return TrainResult(version.path, version.model_version, metrics, version.card, run_id,
                       time.perf_counter() - start, version.name, promotion)


__all__ = ["STEPS", "TrainResult", "train"]
