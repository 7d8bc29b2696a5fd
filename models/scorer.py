"""Live scoring: RUL band, failure probability and anomaly score of a batch of readings.

Get a model quickly (10-30 s: 80 packs simulated in memory; written into the model directory as a
new version and made current)::

    evtwin train --quick --promote                # or, from Python:
    python -c "from training.train import train; train(None, 'models', quick=True, promote=True)"

Then, in an agent::

    from models.features import features_from_records
    from models.scorer import Scorer, fingerprint

    scorer = Scorer.load(model_dir)               # the current version; ModelError if none or features differ
    out = scorer.score(features_from_records(batch))
    out["rul_p50"], out["failure_probability"], out["anomaly_score"], scorer.version
    if fingerprint(model_dir) != scorer.fingerprint: scorer = Scorer.load(model_dir)  # hot reload

``model_dir`` is a registry root (``models.registry``: loads its ``current`` version), a version
directory, or a model in the old flat layout. ``score`` makes one ``Booster.inplace_predict`` call
per model per batch (single-threaded boosters: scale out with replicas, not threads) and one
``score_samples`` call when the IsolationForest is the selected anomaly detector. Full training:
``evtwin train`` (see ``training/``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import FeatureMismatchError, ModelError
from models.features import FEATURE_NAMES, features_from_records
from models.registry import FEATURES_FILE, fingerprint, load_model

RUL_FILE = "rul_xgb_model.joblib"
FAILURE_FILE = "failure_xgb_model.joblib"
CALIBRATOR_FILE = "failure_calibrator.joblib"
IFOREST_FILE = "anomaly_iforest.joblib"
ANOMALY_XGB_FILE = "anomaly_xgb_model.joblib"
ARTIFACT_FILES: tuple[str, ...] = (
    RUL_FILE, FAILURE_FILE, CALIBRATOR_FILE, IFOREST_FILE, ANOMALY_XGB_FILE, FEATURES_FILE,
)
"""Joblib files a model directory may hold (see ``models.registry``)."""
OUTPUT_KEYS: tuple[str, ...] = ("rul_p10", "rul_p50", "rul_p90", "failure_probability", "anomaly_score")
"""Keys of :meth:`Scorer.score`."""


def _booster(model: Any) -> Any:
    """The XGBoost Booster of an sklearn wrapper (or a Booster), set to one thread."""
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    booster.set_param({"nthread": 1})
    return booster


class IForestDetector:
    """IsolationForest anomaly score mapped to 0..1 by the healthy training readings' scores.

    ``score = fraction of healthy training readings that look less anomalous`` (0..1).
    """

    def __init__(self, bundle: Mapping[str, Any]) -> None:
        self.model = bundle["model"]
        self.fill = np.asarray(bundle["fill"], dtype=np.float32)
        self.reference = np.asarray(bundle["reference"], dtype=np.float64)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Raw anomaly score (higher = more anomalous), NaN replaced by training medians."""
        x = np.where(np.isnan(x), self.fill, x)
        return -np.asarray(self.model.score_samples(x), dtype=np.float64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        r = self.raw(x)
        return np.searchsorted(self.reference, r, side="right") / len(self.reference)


class Scorer:
    """The trained models of one model directory.

    Attributes:
        version: Model version, e.g. ``ev-twin@3`` (MLflow registry) or ``file:<sha256[:12]>``.
        feature_names: Features the models take, in column order (== ``FEATURE_NAMES``).
        fingerprint: :func:`fingerprint` of the directory when loaded (compare to detect a new model).
        card: The model card (metrics, dataset hash, creation time).
        registry_version: The registry version it was loaded as (``v3``), or None (a model directory
            outside a registry).
    """

    def __init__(self, card: Mapping[str, Any], objects: Mapping[str, Any], model_fingerprint: str,
                 registry_version: str | None = None) -> None:
        self.card = dict(card)
        self.registry_version = registry_version
        self.version: str = str(card.get("version", "unknown"))
        self.feature_names: tuple[str, ...] = tuple(objects[FEATURES_FILE])
        self.fingerprint = model_fingerprint
        self._rul = _booster(objects[RUL_FILE])
        self._rul_log = card.get("rul_transform") == "log1p"
        self._band_offset = float(card.get("rul_band_offset", 0.0))
        self._failure = _booster(objects[FAILURE_FILE])
        cal = objects.get(CALIBRATOR_FILE)
        self._cal = (None if cal is None else
                     (np.asarray(cal.X_thresholds_, dtype=np.float64), np.asarray(cal.y_thresholds_, dtype=np.float64)))
        self._anomaly_kind = str(card.get("anomaly_detector", "iforest"))
        if self._anomaly_kind == "xgb":
            self._anomaly_xgb = _booster(objects[ANOMALY_XGB_FILE])
        else:
            self._iforest = IForestDetector(objects[IFOREST_FILE])

    @classmethod
    def load(cls, model_dir: Path) -> Scorer:
        """Load and verify the current model of ``model_dir`` (see ``models.registry.locate``).

        Raises:
            ModelNotFoundError: If no model is there, or none is current (the message says how to
                train or promote one).
            FeatureMismatchError: If the stored feature names differ from ``FEATURE_NAMES``.
            ModelError: On any other unreadable or inconsistent artifact.
        """
        loaded = load_model(Path(model_dir), ARTIFACT_FILES)
        model_dir, card, objects = loaded.path, loaded.card, loaded.objects
        stored = tuple(objects.get(FEATURES_FILE, card.get("feature_names", ())))
        if stored != FEATURE_NAMES:
            extra = sorted(set(stored) - set(FEATURE_NAMES))
            missing = sorted(set(FEATURE_NAMES) - set(stored))
            raise FeatureMismatchError(
                f"the model in {model_dir} was trained on other features than models.features computes "
                f"(not computed: {extra}, not in the model: {missing}, or another order); retrain it "
                "with `evtwin train`")
        needed = [RUL_FILE, FAILURE_FILE, ANOMALY_XGB_FILE if card.get("anomaly_detector") == "xgb" else IFOREST_FILE]
        absent = [n for n in needed if n not in objects]
        if absent:
            raise ModelError(f"the model in {model_dir} lacks {absent}; retrain it with `evtwin train`")
        objects = dict(objects, **{FEATURES_FILE: stored})
        return cls(card, objects, loaded.fingerprint, loaded.version)

    def score(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Score a batch of feature rows.

        Args:
            X: float32 features, shape (n, len(feature_names)) (from ``models.features``).

        Returns:
            ``rul_p10``, ``rul_p50``, ``rul_p90``: remaining useful life (EFC), >= 0, p10 <= p50 <= p90;
            ``failure_probability``: calibrated probability (0..1) of failure within the horizon;
            ``anomaly_score``: 0..1, higher = more anomalous. Each float64, shape (n,).

        Raises:
            ModelError: If ``X`` has the wrong number of columns.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ModelError(f"expected features of shape (n, {len(self.feature_names)}), got {X.shape}")
        if len(X) == 0:
            return {k: np.empty(0) for k in OUTPUT_KEYS}
        q = np.asarray(self._rul.inplace_predict(X), dtype=np.float64).reshape(len(X), -1)
        q = np.sort(q, axis=1)
        q[:, 0] -= self._band_offset
        q[:, -1] += self._band_offset
        q = np.sort(q, axis=1)
        q = np.expm1(q) if self._rul_log else q
        q = np.maximum(q, 0.0)
        p = np.asarray(self._failure.inplace_predict(X), dtype=np.float64)
        if self._cal is not None:
            p = np.interp(p, *self._cal)
        if self._anomaly_kind == "xgb":
            a = np.asarray(self._anomaly_xgb.inplace_predict(X), dtype=np.float64)
        else:
            a = self._iforest(X)
        return {"rul_p10": q[:, 0], "rul_p50": q[:, q.shape[1] // 2], "rul_p90": q[:, -1],
                "failure_probability": np.clip(p, 0.0, 1.0), "anomaly_score": np.clip(a, 0.0, 1.0)}

    def score_records(self, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """:meth:`score` of telemetry records (see ``models.features.features_from_records``)."""
        return self.score(features_from_records(records))


__all__ = ["ModelError", "OUTPUT_KEYS", "Scorer", "fingerprint"]
