"""Held-out metrics of the twin's models (same keys for ``evtwin train`` and ``evtwin evaluate``).

Keys (``metrics.json``): ``rul_r2``, ``rul_mae_cycles``, ``rul_rmse_cycles``, ``rul_band_coverage``
(fraction of true RUL inside P10-P90, target 0.8), ``rul_band_width_cycles``; ``failure_roc_auc``,
``failure_pr_auc``, ``failure_brier``, ``failure_prevalence``; ``anomaly_auroc`` (readings with an
active fault vs readings without), ``anomaly_auroc_observable`` (the same without faults that leave
no trace in a reading, ``training.data.SILENT_FAULTS``), ``anomaly_auroc_<fault>`` per fault type, ``anomaly_detected_fraction``
and ``anomaly_delay_days_median`` (first reading above the threshold that flags 1 % of healthy
readings, per faulty battery); baselines ``rul_baseline_mae_cycles`` (mean RUL) and
``failure_baseline_brier`` (prevalence).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data import SILENT_FAULTS

FALSE_ALARM_RATE = 0.01
"""Fraction of healthy readings flagged by the detection threshold (delay metric)."""


def rul_metrics(y: np.ndarray, q: np.ndarray, y_train_mean: float) -> dict[str, float]:
    """RUL metrics of P50 and the P10-P90 band (EFC)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    p50 = q[:, 1]
    return {
        "rul_r2": float(r2_score(y, p50)),
        "rul_mae_cycles": float(mean_absolute_error(y, p50)),
        "rul_rmse_cycles": float(np.sqrt(mean_squared_error(y, p50))),
        "rul_band_coverage": float(np.mean((y >= q[:, 0]) & (y <= q[:, 2]))),
        "rul_band_width_cycles": float(np.mean(q[:, 2] - q[:, 0])),
        "rul_baseline_mae_cycles": float(np.mean(np.abs(y - y_train_mean))),
    }


def failure_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Failure metrics of calibrated probabilities (NaN when only one class is present)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = y.astype(bool)
    prevalence = float(y.mean())
    both = 0 < y.sum() < len(y)
    return {
        "failure_roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "failure_pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "failure_brier": float(brier_score_loss(y, p)),
        "failure_prevalence": prevalence,
        "failure_baseline_brier": prevalence * (1.0 - prevalence),
    }


def anomaly_metrics(score: np.ndarray, frame: pd.DataFrame, prefix: str = "anomaly") -> dict[str, float]:
    """AUROC of ``score`` for readings with an active fault vs healthy readings, per fault and overall.

    Args:
        score: Anomaly score per row (higher = more anomalous).
        frame: The rows' dataset frame (``fault``, ``fault_onset``, ``Timestamp``, ``battery_id``).
        prefix: Metric key prefix.
    """
    from sklearn.metrics import roc_auc_score

    fault = frame["fault"].to_numpy(dtype=object)
    healthy = fault == "none"
    out: dict[str, float] = {}
    if healthy.all() or not healthy.any():
        return {f"{prefix}_auroc": float("nan")}
    out[f"{prefix}_auroc"] = float(roc_auc_score(~healthy, score))
    seen = ~np.isin(fault, SILENT_FAULTS)
    if (~healthy & seen).any():
        out[f"{prefix}_auroc_observable"] = float(roc_auc_score(~healthy[seen], score[seen]))
    for name in sorted(set(fault[~healthy])):
        rows = healthy | (fault == name)
        out[f"{prefix}_auroc_{name}"] = float(roc_auc_score(fault[rows] == name, score[rows]))
    out.update(_detection(score, frame, healthy, prefix))
    return out


def _detection(score: np.ndarray, frame: pd.DataFrame, healthy: np.ndarray, prefix: str) -> dict[str, float]:
    """Fraction of faulty batteries detected and median delay (days) from onset to first flag."""
    threshold = float(np.quantile(score[healthy], 1.0 - FALSE_ALARM_RATE))
    faulty = frame.loc[~healthy, ["battery_id", "Timestamp", "fault_onset"]].assign(s=score[~healthy])
    delays = []
    for _, rows in faulty.groupby("battery_id", sort=False):
        hit = rows[rows["s"] > threshold]
        if len(hit):
            delays.append((hit["Timestamp"].iloc[0] - rows["fault_onset"].iloc[0]).total_seconds() / 86400.0)
    n = faulty["battery_id"].nunique()
    return {f"{prefix}_detected_fraction": len(delays) / n if n else float("nan"),
            f"{prefix}_delay_days_median": float(np.median(delays)) if delays else float("nan"),
            f"{prefix}_threshold": threshold}


def score_metrics(out: dict[str, np.ndarray], rul: np.ndarray, failure: np.ndarray,
                  frame: pd.DataFrame | None, rul_train_mean: float) -> dict[str, float]:
    """All metrics of a scorer's outputs on labelled rows (anomaly only with fault labels)."""
    q = np.column_stack([out["rul_p10"], out["rul_p50"], out["rul_p90"]])
    ok = np.isfinite(rul)
    metrics = rul_metrics(rul[ok], q[ok], rul_train_mean)
    metrics.update(failure_metrics(failure, out["failure_probability"]))
    if frame is not None and "fault" in frame.columns:
        metrics.update(anomaly_metrics(out["anomaly_score"], frame))
    else:
        metrics["anomaly_auroc"] = float("nan")
    return metrics


def evaluate_saved(dataset: Path, model_dir: Path) -> dict[str, Any]:
    """Re-score the saved models on a dataset (all its rows) with the metrics of training.

    Note: unless the dataset is new to the models (another seed), these rows include training rows.

    Raises:
        TrainingDataError: If the dataset is unusable.
        ModelError: If the models cannot be loaded.
    """
    from models.scorer import Scorer
    from training import data

    td = data.load(dataset)
    scorer = Scorer.load(model_dir)
    out = scorer.score(td.X)
    mean = float(scorer.card.get("rul_train_mean", np.nanmean(td.rul)))
    metrics = score_metrics(out, td.rul, td.failure, td.frame if td.kind == "ev_fleet" else None, mean)
    return {"model_version": scorer.version, "dataset": str(dataset), "rows": len(td.X),
            "batteries": int(len(np.unique(td.groups))), "metrics": metrics}


__all__ = ["anomaly_metrics", "evaluate_saved", "failure_metrics", "rul_metrics", "score_metrics"]
