"""Evaluation plots as PNG files (matplotlib, Agg backend): RUL, calibration, feature importance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rul_plot(path: Path, y: np.ndarray, q: np.ndarray) -> Path:
    """Predicted P50 vs true RUL (EFC) on held-out batteries, with the P10-P90 band by true RUL."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.hexbin(y, q[:, 1], gridsize=60, bins="log", cmap="viridis", mincnt=1)
    order = np.argsort(y)
    bins = np.array_split(order, 40)
    centre = [np.median(y[b]) for b in bins if len(b)]
    ax.plot(centre, [np.median(q[b, 0]) for b in bins if len(b)], "w--", lw=1, label="median P10 / P90")
    ax.plot(centre, [np.median(q[b, 2]) for b in bins if len(b)], "w--", lw=1)
    top = float(max(y.max(), q[:, 1].max()))
    ax.plot([0, top], [0, top], "r-", lw=1, label="ideal")
    ax.set_xlabel("true RUL (EFC)")
    ax.set_ylabel("predicted RUL P50 (EFC)")
    ax.set_title("RUL on held-out batteries")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_plot(path: Path, y: np.ndarray, curves: Mapping[str, np.ndarray]) -> Path:
    """Reliability diagram of failure probabilities (one curve per entry of ``curves``)."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect")
    for name, p in curves.items():  # float32 isotonic outputs can exceed 1 by an ulp
        frac, mean = calibration_curve(y, np.clip(p, 0.0, 1.0), n_bins=15, strategy="quantile")
        ax.plot(mean, frac, "o-", ms=3, label=name)
    ax.set_xlabel("predicted probability of failure within the horizon")
    ax.set_ylabel("observed frequency")
    ax.set_title("Failure calibration, held-out batteries")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def importance_plot(path: Path, names: Sequence[str], models: Mapping[str, Any]) -> Path:
    """Gain importance (normalised per model) of each XGBoost model in ``models``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.5))
    height = 0.8 / max(len(models), 1)
    for k, (label, model) in enumerate(models.items()):
        gain = model.get_booster().get_score(importance_type="gain")
        values = np.array([gain.get(n, gain.get(f"f{i}", 0.0)) for i, n in enumerate(names)])
        values = values / values.sum() if values.sum() > 0 else values
        ax.barh(np.arange(len(names)) + k * height, values, height=height, label=label)
    ax.set_yticks(np.arange(len(names)) + 0.4 - height / 2, names)
    ax.invert_yaxis()
    ax.set_xlabel("share of total gain")
    ax.set_title("Feature importance")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["calibration_plot", "importance_plot", "rul_plot"]
