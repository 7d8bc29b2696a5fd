"""Held-out metrics of the twin's models (same keys for ``evtwin train`` and ``evtwin evaluate``).

Keys (``metrics.json``): ``rul_r2``, ``rul_mae_cycles``, ``rul_rmse_cycles``, ``rul_band_coverage``
(fraction of true RUL inside P10-P90, target 0.8), ``rul_band_width_cycles``; ``failure_roc_auc``,
``failure_pr_auc``, ``failure_brier``, ``failure_prevalence``; ``anomaly_auroc`` (readings with an
active fault vs readings without), ``anomaly_auroc_observable`` (the same without faults that leave
no trace in a reading, ``training.data.SILENT_FAULTS``), ``anomaly_auroc_<fault>`` per fault type, ``anomaly_detected_fraction``
and ``anomaly_delay_days_median`` (first reading above the threshold that flags 1 % of healthy
readings, per faulty battery); baselines ``rul_baseline_mae_cycles`` (mean RUL) and
``failure_baseline_brier`` (prevalence), ``failure_mean_probability``. The same failure figures as a
fleet in service sees them (``failure_fleet_*``: rows weighted by ``training.data.fleet_weights`` —
steady reporting, a faulty pack replaced ``repair_after_days`` after onset), for generated fleets.

Per battery (the twin's view, :func:`pack_detection`, :func:`fault_pack_metrics`): the persistent fault score of
``models.state.update_fault`` (a moving average in battery time of the anomaly score, with
hysteresis) flags packs. ``fault_packs_detected`` is the share of packs with a fault other than
``sensor_dropout`` flagged at or after the onset, ``fault_detection_delay_days_median`` the median
days from onset to that flag, ``false_alarm_pack_rate`` the share of healthy packs ever flagged.

The physics baseline (:func:`physics_baseline_metrics`): the fade law fitted to the battery's own
SoH history (``models.state``'s Kalman filter) extrapolated to 80 % (feature ``physics_rul``, band
P50 ± 1.2816 sd from the fit's covariance): ``baseline_rul_mae_cycles``, ``baseline_rul_r2``,
``baseline_rul_band_coverage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data import SILENT_FAULTS, TrainingData, fleet_weights

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


def failure_metrics(y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None,
                    prefix: str = "failure") -> dict[str, float]:
    """Failure metrics of calibrated probabilities (NaN when only one class is present), rows
    weighted by ``weight`` (None = all 1; rows of weight 0 do not count)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    y = y.astype(bool)
    if weight is not None:
        keep = weight > 0
        y, p, weight = y[keep], p[keep], weight[keep]
    prevalence = float(np.average(y, weights=weight)) if len(y) else float("nan")
    both = 0 < y.sum() < len(y)
    return {
        f"{prefix}_roc_auc": float(roc_auc_score(y, p, sample_weight=weight)) if both else float("nan"),
        f"{prefix}_pr_auc": float(average_precision_score(y, p, sample_weight=weight)) if both else float("nan"),
        f"{prefix}_brier": float(brier_score_loss(y, p, sample_weight=weight)) if len(y) else float("nan"),
        f"{prefix}_prevalence": prevalence,
        f"{prefix}_baseline_brier": prevalence * (1.0 - prevalence),
        f"{prefix}_mean_probability": float(np.average(p, weights=weight)) if len(y) else float("nan"),
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


Z80 = 1.2815515655446004
"""Standard-normal quantile of 0.9: P10/P90 = P50 -/+ Z80 sd."""
PACK_FALSE_ALARM_RATE = 0.01
"""Largest share of healthy packs the fault flag may ever flag (threshold choice in training)."""


def physics_baseline_band(X: np.ndarray, rul: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The physics baseline on the rows where it and the label exist: (true RUL, P10/P50/P90 (n, 3)).

    P50 is the feature ``physics_rul``, the band P50 -/+ ``Z80`` sd (``physics_rul_sd``; an unknown
    sd is a band of zero width).
    """
    from models.features import FEATURE_NAMES

    p50 = X[:, FEATURE_NAMES.index("physics_rul")].astype(np.float64)
    sd = X[:, FEATURE_NAMES.index("physics_rul_sd")].astype(np.float64)
    ok = np.isfinite(rul) & np.isfinite(p50)
    y, p50, sd = rul[ok], p50[ok], np.nan_to_num(sd[ok], nan=0.0, posinf=1e9)
    return y, np.column_stack([p50 - Z80 * sd, p50, p50 + Z80 * sd])


def physics_baseline_metrics(X: np.ndarray, rul: np.ndarray) -> dict[str, float]:
    """The physics baseline's RUL metrics (features ``physics_rul`` and ``physics_rul_sd``)."""
    from sklearn.metrics import mean_absolute_error, r2_score

    y, q = physics_baseline_band(X, rul)
    return {"baseline_rul_mae_cycles": float(mean_absolute_error(y, q[:, 1])),
            "baseline_rul_r2": float(r2_score(y, q[:, 1])),
            "baseline_rul_band_coverage": float(np.mean((y >= q[:, 0]) & (y <= q[:, 2])))}


def fault_scores(anomaly: np.ndarray, frame: pd.DataFrame, open_at: float = np.inf,
                 clear_at: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Each reading's battery fault score and flag: ``models.state.update_fault`` replayed per
    battery in row order (the service day read from ``Service_Days``), as the worker runs it."""
    from models import state as st

    days = np.floor(frame["Service_Days"].to_numpy(dtype=np.float64)).tolist()
    states: dict[str, list[float]] = {}
    score = np.empty(len(anomaly))
    flag = np.zeros(len(anomaly), dtype=bool)
    for k, (battery, day, a) in enumerate(zip(frame["battery_id"].tolist(), days, anomaly.tolist(), strict=True)):
        s = states.get(battery)
        if s is None:
            s = states[battery] = st.new_state()
        score[k], flag[k] = st.update_fault(s, a, open_at, clear_at, day)
    return score, flag


def choose_fault_thresholds(anomaly: np.ndarray, frame: pd.DataFrame,
                            rate: float = PACK_FALSE_ALARM_RATE) -> tuple[float, float]:
    """Open and clear thresholds of the fault flag: open above the highest fault score of all but
    ``rate`` of the healthy packs (calibration batteries), clear at 80 % of it."""
    score, _ = fault_scores(anomaly, frame)
    healthy = ~frame.groupby("battery_id", sort=False)["fault"].transform(lambda f: (f != "none").any()).to_numpy()
    peaks = pd.Series(score[healthy]).groupby(frame["battery_id"].to_numpy()[healthy]).max()
    open_at = float(np.quantile(peaks.to_numpy(), 1.0 - rate)) if len(peaks) else 0.5
    return open_at, 0.8 * open_at


@dataclass(frozen=True)
class PackDetection:
    """What the fault flag did to each pack (:func:`pack_detection`); its :meth:`metrics` are the
    pack-level figures of the module docstring.

    Attributes:
        kind: Fault type of every pack with a fault other than the silent ones (index: battery id).
        delay_days: Days from onset to the first flag while the fault is active, per detected pack
            of ``kind`` (index: battery id).
        healthy_flagged: Whether each pack without any fault was ever flagged (index: battery id).
        open_at: Fault score above which the flag opens.
        clear_at: Fault score below which it clears.
    """

    kind: pd.Series
    delay_days: pd.Series
    healthy_flagged: pd.Series
    open_at: float
    clear_at: float

    def metrics(self) -> dict[str, float]:
        """``fault_packs``, ``fault_packs_detected``, ``fault_detection_delay_days_median``,
        ``false_alarm_pack_rate``, ``fault_score_open``, ``fault_score_clear`` (NaN when undefined)."""
        n, delays, healthy = len(self.kind), self.delay_days.to_numpy(), self.healthy_flagged
        return {"fault_packs": float(n),
                "fault_packs_detected": len(delays) / n if n else float("nan"),
                "fault_detection_delay_days_median": float(np.median(delays)) if len(delays) else float("nan"),
                "false_alarm_pack_rate": float(healthy.mean()) if len(healthy) else float("nan"),
                "fault_score_open": self.open_at, "fault_score_clear": self.clear_at}


def pack_detection(anomaly: np.ndarray, frame: pd.DataFrame, open_at: float, clear_at: float) -> PackDetection:
    """Replay the fault flag over the rows (:func:`fault_scores`) and collect its outcome per pack."""
    _, flag = fault_scores(anomaly, frame, open_at, clear_at)
    f = pd.DataFrame({"b": frame["battery_id"].to_numpy(), "fault": frame["fault"].to_numpy(dtype=object),
                      "t": frame["Timestamp"].to_numpy(), "onset": frame["fault_onset"].to_numpy(), "flag": flag})
    kind = f[f["fault"] != "none"].groupby("b")["fault"].first()
    healthy = sorted(set(f["b"]) - set(kind.index))
    flagged = f.groupby("b")["flag"].any()
    visible = kind[~kind.isin(SILENT_FAULTS)]
    after = f[(f["fault"] != "none") & f["flag"] & f["b"].isin(visible.index)]
    first = after.groupby("b").first()
    delays = pd.Series([(pd.Timestamp(row["t"]) - pd.Timestamp(row["onset"])).total_seconds() / 86400.0
                        for _, row in first.iterrows()], index=first.index, dtype=np.float64)
    return PackDetection(visible, delays, flagged[healthy].astype(bool), open_at, clear_at)


def fault_pack_metrics(anomaly: np.ndarray, frame: pd.DataFrame, open_at: float,
                       clear_at: float) -> dict[str, float]:
    """Pack-level detection by the fault flag (see the module docstring)."""
    return pack_detection(anomaly, frame, open_at, clear_at).metrics()


def score_metrics(out: dict[str, np.ndarray], rul: np.ndarray, failure: np.ndarray,
                  frame: pd.DataFrame | None, rul_train_mean: float) -> dict[str, float]:
    """All metrics of a scorer's outputs on labelled rows (anomaly only with fault labels)."""
    q = np.column_stack([out["rul_p10"], out["rul_p50"], out["rul_p90"]])
    ok = np.isfinite(rul)
    metrics = rul_metrics(rul[ok], q[ok], rul_train_mean)
    metrics.update(failure_metrics(failure, out["failure_probability"]))
    if frame is not None and "fault" in frame.columns:
        metrics.update(failure_metrics(failure, out["failure_probability"], fleet_weights(frame), "failure_fleet"))
        metrics.update(anomaly_metrics(out["anomaly_score"], frame))
    else:
        metrics["anomaly_auroc"] = float("nan")
    return metrics


def evaluate_saved(dataset: Path, model_dir: Path, plot_dir: Path | None = None) -> dict[str, Any]:
    """Re-score the saved models on a dataset (all its rows) with the metrics of training.

    Note: unless the dataset is new to the models (another seed), these rows include training rows.

    Args:
        dataset: Dataset file or directory.
        model_dir: The model to load (registry or one version's directory).
        plot_dir: Also write the plots of :func:`evaluation_plots` there (created when absent);
            the report then lists them under ``plots``.

    Raises:
        TrainingDataError: If the dataset is unusable.
        TrainingError: If plots were asked for and matplotlib is missing or ``plot_dir`` cannot be created.
        ModelError: If the models cannot be loaded.
    """
    from models.scorer import Scorer
    from training import data
    from training.errors import TrainingError

    if plot_dir is not None:  # before the minutes of scoring a large dataset
        from training.plots import require_matplotlib

        require_matplotlib()
        try:
            Path(plot_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrainingError(f"cannot create the plot directory {plot_dir}: {exc}") from None
    td = data.load(dataset)
    scorer = Scorer.load(model_dir)
    out = scorer.score(td.X)
    mean = float(scorer.card.get("rul_train_mean", np.nanmean(td.rul)))
    metrics = score_metrics(out, td.rul, td.failure, td.frame if td.kind == "ev_fleet" else None, mean)
    metrics.update(physics_baseline_metrics(td.X, td.rul))
    detection = None
    if td.kind == "ev_fleet":
        detection = pack_detection(out["anomaly_score"], td.frame, float(scorer.card.get("fault_score_open", 0.5)),
                                   float(scorer.card.get("fault_score_clear", 0.4)))
        metrics.update(detection.metrics())
    report: dict[str, Any] = {"model_version": scorer.version, "dataset": str(dataset), "rows": len(td.X),
                              "batteries": int(len(np.unique(td.groups))), "metrics": metrics}
    if plot_dir is not None:
        name = f"{Path(dataset).name}, {report['batteries']} packs, {scorer.version}"
        try:
            written = evaluation_plots(Path(plot_dir), td, out, detection, name, metrics)
        except OSError as exc:
            raise TrainingError(f"cannot write the plots to {plot_dir}: {exc}") from None
        report["plots"] = [str(path) for path in written]
    return report


def evaluation_plots(plot_dir: Path, td: TrainingData, out: dict[str, np.ndarray], detection: PackDetection | None,
                     name: str, metrics: dict[str, float]) -> list[Path]:
    """The PNG plots of a scored dataset, each only when its labels allow it; the files written.

    ``rul_pred_vs_true.png`` (P50 vs true RUL with the P10-P90 band), ``rul_physics_baseline.png``
    (error and band coverage by true RUL, learned model vs physics baseline),
    ``failure_calibration.png`` (both classes present), ``anomaly_roc.png`` (fault labels: all faults,
    observable faults, each fault type; AUROC as :func:`anomaly_metrics` computes it) and
    ``fault_detection.png`` (``detection``: delay after onset, packs detected, healthy packs flagged).

    Args:
        plot_dir: Existing directory to write into (files of the same name are replaced).
        td: The scored dataset.
        out: The scorer's outputs on all of its rows.
        detection: The fault flag's outcome per pack (None without fault labels).
        name: What was scored, for the titles.
        metrics: The report's metrics of the same rows (the Brier score in the legend).
    """
    from training import plots

    written = []
    q = np.column_stack([out["rul_p10"], out["rul_p50"], out["rul_p90"]])
    ok = np.isfinite(td.rul)
    if ok.any():
        written.append(plots.rul_plot(plot_dir / "rul_pred_vs_true.png", td.rul[ok], q[ok], f"RUL: {name}"))
        predictions = {"learned model": (td.rul[ok], q[ok])}
        base_y, base_q = physics_baseline_band(td.X, td.rul)
        if len(base_y):
            predictions["physics baseline"] = (base_y, base_q)
        written.append(plots.baseline_plot(plot_dir / "rul_physics_baseline.png", predictions,
                                           f"Learned model vs physics baseline: {name}"))
    failure = td.failure.astype(bool)
    if 0 < failure.sum() < len(failure):
        written.append(plots.calibration_plot(
            plot_dir / "failure_calibration.png", failure,
            {f"model (Brier {metrics['failure_brier']:.3f})": out["failure_probability"]},
            f"Failure calibration: {name}"))
    if td.kind == "ev_fleet" and "fault" in td.frame.columns:
        fault = td.frame["fault"].to_numpy(dtype=object)
        healthy, score = fault == "none", out["anomaly_score"]
        if healthy.any() and not healthy.all():
            curves = {"all faults": (~healthy, score)}
            seen = ~np.isin(fault, SILENT_FAULTS)
            if (~healthy & seen).any() and not seen.all():
                curves["observable faults"] = (~healthy[seen], score[seen])
            for kind in sorted(set(fault[~healthy])):
                rows = healthy | (fault == kind)
                curves[str(kind)] = (fault[rows] == kind, score[rows])
            written.append(plots.roc_plot(plot_dir / "anomaly_roc.png", curves,
                                          f"Anomaly score, fault vs healthy readings:\n{name}"))
    if detection is not None:
        written.append(plots.fault_detection_plot(plot_dir / "fault_detection.png", detection,
                                                  PACK_FALSE_ALARM_RATE, f"Fault flag per pack: {name}"))
    return written


__all__ = ["PackDetection", "anomaly_metrics", "choose_fault_thresholds", "evaluate_saved", "evaluation_plots",
           "failure_metrics", "fault_pack_metrics", "fault_scores", "pack_detection", "physics_baseline_band",
           "physics_baseline_metrics", "rul_metrics", "score_metrics"]
