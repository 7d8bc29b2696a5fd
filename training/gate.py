"""The promotion gate: does a candidate beat the champion on the same held-out rows?

:func:`compare` takes the metrics of both models, measured by :func:`measure` on **the same rows**
(batteries neither was trained on by ``training.retrain``, and the recent window of what the twin
collected), and decides: promote only when the candidate is not worse on any gated metric (within
``max_regression``, relative to the champion's value) and better on the primary one (by more than
``min_improvement``, relative). A metric either model cannot measure on these rows (NaN: one class
only, say) is skipped and named in the reasons; an unmeasurable primary metric rejects.

The failure probability is gated as a fleet in service sees it (``failure_fleet_brier``,
``failure_fleet_roc_auc``: rows weighted by ``training.data.fleet_weights``), the distribution it is
calibrated for; on the dataset's unweighted rows a better-calibrated model can score worse.
Every metric has a direction (:data:`LOWER_IS_BETTER`, :data:`HIGHER_IS_BETTER`);
``rul_band_coverage_error`` is ``abs(rul_band_coverage - 0.8)``, since a band can be too wide as
well as too narrow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.errors import TrainingError

BAND_TARGET = 0.8
"""Coverage the P10-P90 band aims at."""
LOWER_IS_BETTER = frozenset({
    "rul_mae_cycles", "rul_rmse_cycles", "rul_band_coverage_error", "rul_band_width_cycles",
    "failure_brier", "failure_fleet_brier", "anomaly_delay_days_median",
})
HIGHER_IS_BETTER = frozenset({
    "rul_r2", "failure_roc_auc", "failure_fleet_roc_auc", "failure_pr_auc", "anomaly_auroc",
    "anomaly_auroc_observable", "anomaly_detected_fraction",
})
GATEABLE = LOWER_IS_BETTER | HIGHER_IS_BETTER
"""Metrics the gate knows the direction of."""


@dataclass(frozen=True)
class Thresholds:
    """The gate's settings (``EVTWIN_RETRAIN_*``)."""

    primary: str = "rul_mae_cycles"
    gated: tuple[str, ...] = ("rul_mae_cycles", "rul_band_coverage_error", "failure_fleet_brier",
                              "failure_fleet_roc_auc", "anomaly_auroc")
    max_regression: float = 0.02
    min_improvement: float = 0.0

    def __post_init__(self) -> None:
        unknown = sorted({self.primary, *self.gated} - GATEABLE)
        if unknown:
            raise TrainingError(f"the gate does not know the metric(s) {unknown} (known: "
                                f"{', '.join(sorted(GATEABLE))}); fix EVTWIN_RETRAIN_PRIMARY_METRIC / "
                                "EVTWIN_RETRAIN_GATED_METRICS")
        if self.max_regression < 0 or self.min_improvement < 0:
            raise TrainingError("EVTWIN_RETRAIN_MAX_REGRESSION and EVTWIN_RETRAIN_MIN_IMPROVEMENT must be >= 0")

    @classmethod
    def parse(cls, primary: str, gated: str, max_regression: float, min_improvement: float) -> Thresholds:
        """From the settings' text (``gated`` comma-separated); the primary metric is always gated."""
        names = tuple(dict.fromkeys([primary.strip(), *(g.strip() for g in gated.split(",") if g.strip())]))
        return cls(primary.strip(), names, max_regression, min_improvement)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gated": list(self.gated)}


@dataclass(frozen=True)
class Check:
    """One metric compared: values, the relative change (positive = the candidate is better)."""

    metric: str
    candidate: float
    champion: float
    change: float
    ok: bool
    note: str


@dataclass(frozen=True)
class GateResult:
    """The decision: ``promote`` or not, why (one line), and each metric's comparison."""

    promote: bool
    reason: str
    checks: list[Check] = field(default_factory=list)

    @property
    def decision(self) -> str:
        return "promoted" if self.promote else "rejected"


def with_derived(metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` plus ``rul_band_coverage_error``."""
    out = {k: float(v) for k, v in metrics.items()}
    if "rul_band_coverage" in out:
        out["rul_band_coverage_error"] = abs(out["rul_band_coverage"] - BAND_TARGET)
    return out


def _relative_gain(metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate is, relative to the champion (negative = worse)."""
    gain = champion - candidate if metric in LOWER_IS_BETTER else candidate - champion
    scale = max(abs(champion), 1e-9)
    return gain / scale


def compare(candidate: Mapping[str, float], champion: Mapping[str, float] | None,
            thresholds: Thresholds) -> GateResult:
    """Decide whether ``candidate`` replaces ``champion`` (both measured on the same rows).

    Args:
        candidate: The candidate's metrics (``training.evaluate`` keys; derived ones are added).
        champion: The champion's, or None when nothing is current (the candidate is promoted).
        thresholds: The gate's settings.
    """
    if champion is None:
        return GateResult(True, "no current model: the candidate becomes the first champion")
    cand, champ = with_derived(candidate), with_derived(champion)
    checks: list[Check] = []
    for metric in thresholds.gated:
        a, b = cand.get(metric, math.nan), champ.get(metric, math.nan)
        if not (math.isfinite(a) and math.isfinite(b)):
            checks.append(Check(metric, a, b, math.nan, True, "not measurable on the gate rows: skipped"))
            continue
        gain = _relative_gain(metric, a, b)
        if metric == thresholds.primary:
            ok = gain > thresholds.min_improvement
            note = "better" if ok else ("no better" if gain >= 0 else "worse")
        else:
            ok = gain >= -thresholds.max_regression
            note = "not worse" if ok else f"worse by more than {thresholds.max_regression:.1%}"
        checks.append(Check(metric, a, b, gain, ok, note))
    primary = next(c for c in checks if c.metric == thresholds.primary)
    if not math.isfinite(primary.change):
        return GateResult(False, f"primary metric {thresholds.primary} not measurable on the gate rows", checks)
    worse = [c for c in checks if not c.ok and c.metric != thresholds.primary]
    if worse:
        names = ", ".join(f"{c.metric} {c.candidate:.4g} vs {c.champion:.4g}" for c in worse)
        return GateResult(False, f"worse on {names}", checks)
    if not primary.ok:
        return GateResult(False, f"{thresholds.primary} {primary.candidate:.4g} vs champion's "
                          f"{primary.champion:.4g}: not better by more than {thresholds.min_improvement:.1%}",
                          checks)
    return GateResult(True, f"{thresholds.primary} {primary.candidate:.4g} vs champion's {primary.champion:.4g} "
                      f"({primary.change:+.1%}), no gated metric worse", checks)


def measure(scorer: Any, X: np.ndarray, rul: np.ndarray, failure: np.ndarray, frame: pd.DataFrame,
            rul_train_mean: float) -> dict[str, float]:
    """Metrics of a loaded ``models.scorer.Scorer`` on labelled rows (the serving path), with the
    derived gate metrics."""
    from training.evaluate import score_metrics

    out = scorer.score(X)
    return with_derived(score_metrics(out, rul, failure, frame, rul_train_mean))


__all__ = ["BAND_TARGET", "GATEABLE", "HIGHER_IS_BETTER", "LOWER_IS_BETTER", "Check", "GateResult",
           "Thresholds", "compare", "measure", "with_derived"]
