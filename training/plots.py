"""Evaluation plots as PNG files (matplotlib, Agg backend): RUL, the physics baseline beside the
learned model, failure calibration, anomaly ROC, per-pack fault detection, feature importance."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import TrainingError


def require_matplotlib() -> None:
    """Check that matplotlib can be imported.

    Raises:
        TrainingError: If it cannot, with the command that installs it.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise TrainingError(f"writing plots needs matplotlib, which cannot be imported ({exc}); install "
                            f"it with `{sys.executable} -m pip install matplotlib`") from None


def _pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rul_plot(path: Path, y: np.ndarray, q: np.ndarray, title: str = "RUL on held-out batteries") -> Path:
    """Predicted P50 vs true RUL (EFC), with the P10-P90 band by true RUL (``q``: P10, P50, P90)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    from matplotlib import patheffects

    cells = ax.hexbin(y, q[:, 1], gridsize=60, bins="log", cmap="viridis", mincnt=1)
    fig.colorbar(cells, ax=ax, label="readings per cell")
    order = np.argsort(y)
    bins = np.array_split(order, 40)
    centre = [np.median(y[b]) for b in bins if len(b)]
    outline = [patheffects.Stroke(linewidth=2.5, foreground="k"), patheffects.Normal()]  # seen on any cell
    ax.plot(centre, [np.median(q[b, 0]) for b in bins if len(b)], "w--", lw=1, label="median P10 / P90",
            path_effects=outline)
    ax.plot(centre, [np.median(q[b, 2]) for b in bins if len(b)], "w--", lw=1, path_effects=outline)
    top = float(max(y.max(), q[:, 1].max()))
    ax.plot([0, top], [0, top], "r-", lw=1, label="ideal")
    ax.set_xlabel("true RUL (EFC)")
    ax.set_ylabel("predicted RUL P50 (EFC)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_plot(path: Path, y: np.ndarray, curves: Mapping[str, np.ndarray],
                     title: str = "Failure calibration, held-out batteries") -> Path:
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
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _by_true_rul(y: np.ndarray, values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median true RUL and mean of ``values`` in each bin of ``edges`` (bins without rows left out)."""
    k = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, len(edges) - 2)
    keep = [b for b in range(len(edges) - 1) if (k == b).any()]
    return (np.array([np.median(y[k == b]) for b in keep]),
            np.array([np.mean(values[k == b]) for b in keep]))


def baseline_plot(path: Path, predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  title: str = "Learned model vs physics baseline", bins: int = 12) -> Path:
    """Absolute error of P50 and P10-P90 coverage by true RUL, one line per entry of ``predictions``.

    Args:
        path: PNG file to write.
        predictions: Name -> (true RUL (n,), P10/P50/P90 (n, 3)), each on its own rows.
        title: Figure title.
        bins: Bins of true RUL (equal counts of the first entry's rows).
    """
    plt = _pyplot()
    first = next(iter(predictions.values()))[0]
    edges = np.unique(np.quantile(first, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:
        edges = np.array([float(first.min()), float(first.max()) + 1.0])
    fig, (err, cov) = plt.subplots(1, 2, figsize=(11, 4.8))
    for name, (y, q) in predictions.items():
        x, mae = _by_true_rul(y, np.abs(q[:, 1] - y), edges)
        err.plot(x, mae, "o-", ms=4, label=f"{name} (MAE {np.mean(np.abs(q[:, 1] - y)):.0f})")
        inside = ((y >= q[:, 0]) & (y <= q[:, 2])).astype(np.float64)
        x, share = _by_true_rul(y, inside, edges)
        cov.plot(x, share, "o-", ms=4, label=f"{name} ({inside.mean():.0%} overall)")
    cov.axhline(0.8, color="k", ls=":", lw=1, label="target 80 %")
    err.set_xlabel("true RUL (EFC)")
    err.set_ylabel("mean absolute error of P50 (EFC)")
    err.set_title("error by true RUL")
    err.legend(loc="upper left")
    cov.set_xlabel("true RUL (EFC)")
    cov.set_ylabel("share of true RUL inside P10-P90")
    cov.set_ylim(-0.02, 1.02)
    cov.set_title("band coverage by true RUL")
    cov.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roc_plot(path: Path, curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
             title: str = "Anomaly detection") -> Path:
    """ROC curves with their AUROC in the legend; ``curves``: name -> (positive (bool), score).

    The first curve is drawn bold (the headline one), the others thin.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="chance (AUROC 0.5)")
    for k, (name, (positive, score)) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(positive, score)
        ax.plot(fpr, tpr, lw=2.2 if k == 0 else 1.1,
                label=f"{name} (AUROC {roc_auc_score(positive, score):.3f})")
    ax.set_xlabel("false positive rate (healthy readings flagged)")
    ax.set_ylabel("true positive rate (fault readings flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fault_detection_plot(path: Path, detection: Any, target_rate: float,
                         title: str = "Per-pack fault detection") -> Path:
    """Days from fault onset to the fault flag per detected pack (by fault type), and the shares of
    fault packs detected and of healthy packs ever flagged (``target_rate``: the threshold's aim).

    ``detection`` is a :class:`training.evaluate.PackDetection` (not imported: evaluate imports
    this module, and the units form no import circle)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (hist, share) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1.6, 1]})
    delays, n = detection.delay_days, len(detection.kind)
    if len(delays):
        kinds = sorted(set(detection.kind[delays.index]))
        groups = [delays[detection.kind[delays.index] == kind].to_numpy() for kind in kinds]
        top = max(float(delays.max()), 1.0)
        edges = np.histogram_bin_edges(delays.to_numpy(), bins=min(20, max(5, len(delays))),
                                       range=(min(float(delays.min()), 0.0), top))
        hist.hist(groups, bins=edges, stacked=True, label=kinds)
        median = float(np.median(delays.to_numpy()))
        hist.axvline(median, color="k", ls="--", lw=1, label=f"median {median:.1f} days")
        hist.legend(loc="best", fontsize="small")
    else:
        hist.text(0.5, 0.5, "no fault pack detected" if n else "no fault pack in the dataset",
                  ha="center", va="center", transform=hist.transAxes)
    hist.set_xlabel("days from fault onset to the fault flag")
    hist.set_ylabel("packs")
    hist.yaxis.set_major_locator(MaxNLocator(integer=True))
    hist.set_title(f"detection delay: {len(delays)} of {n} fault packs detected")
    healthy = detection.healthy_flagged
    flagged = int(healthy.sum())
    values = [len(delays) / n if n else 0.0, flagged / len(healthy) if len(healthy) else 0.0]
    bars = share.bar(["fault packs\ndetected", "healthy packs\never flagged"], values,
                     color=["tab:green", "tab:red"])
    for bar, text in zip(bars, (f"{len(delays)} / {n}", f"{flagged} / {len(healthy)}"), strict=True):
        share.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                       va="bottom", xytext=(0, 2), textcoords="offset points")
    share.axhline(target_rate, color="k", ls=":", lw=1, label=f"false-alarm aim {target_rate:.0%}")
    share.set_ylim(0, 1.08)
    share.set_ylabel("share of packs")
    share.set_title("packs flagged")
    share.legend(loc="upper right", fontsize="small")
    fig.suptitle(title)
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


__all__ = ["baseline_plot", "calibration_plot", "fault_detection_plot", "importance_plot", "require_matplotlib",
           "roc_plot", "rul_plot"]
