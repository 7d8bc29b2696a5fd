"""Fit the twin's models: RUL quantile band, calibrated failure classifier, anomaly detectors.

Hyper-parameters start from the seed (:data:`SEED`: 200 trees; depth 8 RUL, 6 failure; learning rate
0.1; subsample 0.8; colsample 0.8); departures are recorded in :class:`HyperParams` with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

QUANTILES: tuple[float, float, float] = (0.1, 0.5, 0.9)
"""Quantiles of the RUL band (P10, P50, P90)."""
AGE_FEATURES: tuple[str, ...] = (
    "soh", "charge_cycles", "service_days", "cycles_per_day", "fade_rate", "projected_days_left",
    "projected_cycles_left", "sqrt_cycles_left", "soh_filtered", "fade_sd", "physics_rul", "physics_rul_sd",
    "history_days",
)
"""Features that tell how old and worn a pack is (hidden from the supervised fault detector)."""


@dataclass(frozen=True)
class HyperParams:
    """Hyper-parameters of every model.

    Seed values: 200 trees, depth 8 (RUL) / 6 (failure), learning rate 0.1, subsample 0.8,
    colsample 0.8. Departures, measured on held-out batteries of the 500-battery fleet (seed 0), with
    the live scoring budget in mind (~5 µs per reading for all models, one thread):

    - RUL depth 5, 100 rounds, learning rate 0.15: R² 0.807 with the pack-age features of
      ``models.features`` (0.738 without them) vs 0.811 at depth 6 x 150 rounds, lr 0.1 (twice the
      scoring time) and 0.817 at depth 7 x 200; one tree per quantile per round.
    - Failure depth 5, 100 rounds, min_child_weight 50: ROC-AUC 0.918 vs 0.914 at depth 6 x 200
      (less memorising of individual batteries), 1.0 instead of 2.6 µs per reading.
    - Anomaly (supervised detector) depth 5, 100 rounds, min_child_weight 50, blind to ``soh``,
      ``charge_cycles`` and the pack-age features (``anomaly_blind``) and fitted without faults that
      leave no trace in a reading: it must flag abnormal physics, not learn that older packs more
      often carry a fault. Without the age blind the AUROC rises to 0.935 (0.869 blind), but the
      gain is a prior: the invisible ``sensor_dropout`` goes from 0.26 to 0.59 and every old healthy
      pack scores higher.

    Attributes:
        rul_trees: Boosting rounds of the RUL quantile model (one tree per quantile per round).
        rul_depth: Max depth of the RUL trees.
        rul_learning_rate: Shrinkage of the RUL booster.
        rul_log: Fit quantiles of log1p(RUL) (quantiles commute with monotone maps; the band then
            scales with the RUL, which suits a target spanning 0-3000 EFC).
        failure_trees: Rounds of the failure classifier.
        failure_depth: Max depth of the failure trees.
        anomaly_trees: Rounds of the supervised fault detector.
        anomaly_depth: Max depth of the supervised fault detector.
        anomaly_blind: Features hidden from the supervised detector (set to NaN while training, so
            no tree splits on them).
        min_child_weight: Min hessian per leaf of the classifiers (regularisation).
        learning_rate: Shrinkage of the classifiers.
        subsample: Row subsampling per tree.
        colsample: Column subsampling per tree.
        iforest_trees: Trees of the IsolationForest.
        iforest_samples: Rows per IsolationForest tree.
        threshold_folds: Folds (by battery) of the training packs refitted for the fault flag's
            threshold: each fold's packs are scored by a fault detector fitted without them, so
            that the threshold is placed on every healthy pack not fitted on (the calibration
            packs and these) instead of the ~50 calibration packs alone; 0 = calibration only.
        attach_replays: Also fit the RUL and failure models on each training pack replayed from a
            twin attached mid-life (``training.data.attach_replays``), as live twins meet most packs.
        failure_repaired_weight: Weight in the failure model's fit of the rows a fleet no longer
            has — more than ``repair_after_days`` after the pack's fault began (``training.data.
            fleet_weights``; 0 in its calibration). In the dataset such packs run on to end of
            life and make 83 % of the label's positives (seed 101): at full weight the model
            learns that old packs fail, and the live fleet, which replaces them, pays for it
            (replay of the live fleet, ``python -m streams.tools.replay_live``: ROC-AUC 0.80;
            0.84 at 0.1, 0.86 at 0). At 0.1 the dataset's own held-out rows keep ROC-AUC 0.940-0.944
            (fresh seed 101, training seeds 0-2; 0.920 at 0 with seed 1).
        nthread: Threads while training (scoring uses one). 1 by default: on this 2-core machine,
            shared with the running pipeline, OpenMP threads spin at barriers and 2 threads were
            up to 9x slower than 1 (failure model on 500 packs: 18.5 s vs 2.1 s under load).
        seed: Random seed.
    """

    rul_trees: int = 100
    rul_depth: int = 5
    rul_learning_rate: float = 0.15
    rul_log: bool = True
    failure_trees: int = 100
    failure_depth: int = 5
    anomaly_trees: int = 100
    anomaly_depth: int = 5
    anomaly_blind: tuple[str, ...] = AGE_FEATURES
    min_child_weight: float = 50.0
    learning_rate: float = 0.1
    subsample: float = 0.8
    colsample: float = 0.8
    iforest_trees: int = 100
    iforest_samples: int = 256
    threshold_folds: int = 4
    attach_replays: bool = True
    failure_repaired_weight: float = 0.1
    nthread: int = 1
    seed: int = 0

    def as_params(self) -> dict[str, Any]:
        """Flat dict for MLflow."""
        return asdict(self)


SEED = HyperParams(rul_trees=200, rul_depth=8, rul_learning_rate=0.1, failure_trees=200, failure_depth=6,
                   anomaly_trees=200, anomaly_depth=6, anomaly_blind=(), min_child_weight=1.0)
"""The seed's hyper-parameters (for comparison)."""
QUICK = HyperParams(rul_trees=60, failure_trees=60, anomaly_trees=60, rul_learning_rate=0.2)
"""Hyper-parameters of ``--quick`` runs (fewer rounds)."""


def _common(hp: HyperParams) -> dict[str, Any]:
    return dict(subsample=hp.subsample, colsample_bytree=hp.colsample, tree_method="hist",
                n_jobs=hp.nthread, random_state=hp.seed)


def fit_rul(X: np.ndarray, rul: np.ndarray, hp: HyperParams) -> Any:
    """Quantile regression of RUL (EFC): one booster, three quantiles (``QUANTILES``).

    Returns:
        A fitted ``xgboost.XGBRegressor``; its prediction is log1p(RUL) when ``hp.rul_log``.
    """
    import xgboost as xgb

    y = np.log1p(np.maximum(rul, 0.0)) if hp.rul_log else rul
    model = xgb.XGBRegressor(objective="reg:quantileerror", quantile_alpha=np.array(QUANTILES),
                             n_estimators=hp.rul_trees, max_depth=hp.rul_depth,
                             learning_rate=hp.rul_learning_rate, **_common(hp))
    model.fit(X, y)
    return model


def predict_rul(model: Any, X: np.ndarray, log: bool, offset: float = 0.0) -> np.ndarray:
    """P10/P50/P90 of RUL (EFC), shape (n, 3), as the scorer computes them.

    Sorted per row, the band widened by ``offset`` (see :func:`conformal_offset`), clipped at 0.
    """
    q = np.sort(np.asarray(model.predict(X), dtype=np.float64).reshape(len(X), -1), axis=1)
    q[:, 0] -= offset
    q[:, -1] += offset
    q = np.sort(q, axis=1)
    return np.maximum(np.expm1(q) if log else q, 0.0)


def conformal_offset(model: Any, X: np.ndarray, rul: np.ndarray, log: bool, coverage: float = 0.8) -> float:
    """Widening of the P10-P90 band that gives ``coverage`` on held-out batteries (split CQR).

    Conformalised quantile regression (Romano et al., NeurIPS 2019): the conformity score of a row is
    ``max(q10 - y, y - q90)`` in the model's target space (log1p(EFC) when ``log``); the band is
    widened (or narrowed, if negative) by its finite-sample ``coverage`` quantile.

    Returns:
        The offset, in the model's target space.
    """
    q = np.sort(np.asarray(model.predict(X), dtype=np.float64).reshape(len(X), -1), axis=1)
    y = np.log1p(np.maximum(rul, 0.0)) if log else rul
    score = np.maximum(q[:, 0] - y, y - q[:, -1])
    level = min(1.0, coverage * (1.0 + 1.0 / len(score)))
    return float(np.quantile(score, level))


def fit_classifier(X: np.ndarray, y: np.ndarray, trees: int, depth: int, hp: HyperParams,
                   blind: tuple[str, ...] = (), weight: np.ndarray | None = None) -> Any:
    """Binary XGBoost classifier (log-loss).

    Args:
        X: Features (``FEATURE_NAMES`` columns).
        y: Labels (bool).
        trees: Boosting rounds.
        depth: Max tree depth.
        hp: Other hyper-parameters.
        blind: Feature names the model must not use (NaN while training: no split is ever made on
            them, so their values do not matter when scoring).
        weight: Weight of each row (None = all 1).
    """
    import xgboost as xgb

    from models.features import FEATURE_NAMES

    if blind:
        X = X.copy()
        X[:, [FEATURE_NAMES.index(name) for name in blind]] = np.nan
    model = xgb.XGBClassifier(objective="binary:logistic", eval_metric="logloss", n_estimators=trees,
                              max_depth=depth, learning_rate=hp.learning_rate,
                              min_child_weight=hp.min_child_weight, **_common(hp))
    model.fit(X, y.astype(np.int8), sample_weight=weight)
    return model


def fit_calibrator(p_raw: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Any:
    """Isotonic calibration of raw probabilities, fitted on held-out batteries (rows weighted by
    ``weight``, None = all 1)."""
    from sklearn.isotonic import IsotonicRegression

    cal = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    cal.fit(p_raw, y.astype(np.float64), sample_weight=weight)
    return cal


def fit_iforest(X: np.ndarray, hp: HyperParams, reference_rows: int = 20_000) -> dict[str, Any]:
    """Unsupervised IsolationForest on the training readings (faults included, as in the field).

    Returns:
        ``{"model", "fill", "reference"}``: NaN fill values (training medians), and the sorted raw
        scores of up to ``reference_rows`` training readings that map a raw score to 0..1.
    """
    from sklearn.ensemble import IsolationForest

    present = ~np.isnan(X)
    fill = np.zeros(X.shape[1], dtype=np.float32)  # columns never reported (e.g. Kaggle): 0
    for k in np.flatnonzero(present.any(axis=0)):
        fill[k] = np.median(X[present[:, k], k])
    Xf = np.where(np.isnan(X), fill, X)
    model = IsolationForest(n_estimators=hp.iforest_trees, max_samples=min(hp.iforest_samples, len(X)),
                            random_state=hp.seed, n_jobs=1)
    model.fit(Xf)
    rng = np.random.default_rng(hp.seed)
    rows = rng.choice(len(Xf), size=min(reference_rows, len(Xf)), replace=False)
    reference = np.sort(-model.score_samples(Xf[rows]))
    return {"model": model, "fill": fill, "reference": reference}


__all__ = ["AGE_FEATURES", "QUANTILES", "QUICK", "SEED", "HyperParams", "conformal_offset", "fit_calibrator", "fit_classifier", "fit_iforest",
           "fit_rul", "predict_rul"]
