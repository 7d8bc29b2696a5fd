"""The naive baseline of ``evtwin bench pipeline``: the seed's predictor, one event at a time.

Kept only to measure against: decode, validate, build the features of one row, call each model's
scikit-learn-API method for that row (RUL quantiles, failure probability and its calibrator, the
anomaly detector the model card selects), encode, produce. Same inputs and the same outputs as the
real path, so the comparison is fair: the only difference is one event per call.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from schemas.codec import AvroCodec
from schemas.fields import CARRIED_FIELDS as CARRIED
from streams.scoring.validation import telemetry_problem


class NaivePredictor:
    """Scores one raw telemetry value at a time."""

    def __init__(self, model_dir: Path) -> None:
        from models.features import features_from_columns, record_columns, record_timestamps, replay
        from models.registry import load_artifacts
        from models.scorer import (
            ANOMALY_XGB_FILE,
            ARTIFACT_FILES,
            CALIBRATOR_FILE,
            FAILURE_FILE,
            IFOREST_FILE,
            RUL_FILE,
        )

        card, objects = load_artifacts(model_dir, ARTIFACT_FILES)
        self.states: dict[str, Any] = {}  # the twin's state per battery (models.state), as the worker keeps

        def features(records: list[dict[str, Any]]) -> np.ndarray:
            cols, mode = record_columns(records)
            states = replay([r["battery_id"] for r in records], cols, mode, record_timestamps(records),
                            self.states)
            return features_from_columns(cols, mode, states)

        self.features = features
        self.rul = objects[RUL_FILE]
        self.rul_log = card.get("rul_transform") == "log1p"
        self.band_offset = float(card.get("rul_band_offset", 0.0))
        self.failure = objects[FAILURE_FILE]
        self.calibrator = objects.get(CALIBRATOR_FILE)
        self.anomaly_xgb = objects.get(ANOMALY_XGB_FILE) if card.get("anomaly_detector") == "xgb" else None
        self.iforest = objects.get(IFOREST_FILE) if self.anomaly_xgb is None else None
        self.version = str(card.get("version", "unknown"))
        self.decode = AvroCodec("telemetry").decode
        self.encode = AvroCodec("prediction").encode

    def _anomaly(self, x: np.ndarray) -> float:
        if self.anomaly_xgb is not None:
            return float(self.anomaly_xgb.predict_proba(x)[0, 1])
        assert self.iforest is not None
        bundle = self.iforest
        x = np.where(np.isnan(x), np.asarray(bundle["fill"], dtype=np.float32), x)
        raw = -float(bundle["model"].score_samples(x)[0])
        reference = np.asarray(bundle["reference"])
        return float(np.searchsorted(reference, raw, side="right") / len(reference))

    def handle(self, value: bytes) -> bytes:
        """Return the encoded prediction of one raw telemetry value."""
        record = self.decode(value)
        now = int(time.time() * 1000)
        if telemetry_problem(record, now, 300_000, 30 * 86_400_000):
            raise ValueError("invalid reading in the benchmark input")
        x = self.features([record])
        q = np.sort(np.asarray(self.rul.predict(x), dtype=np.float64).reshape(-1))
        q[0] -= self.band_offset
        q[-1] += self.band_offset
        q = np.sort(q)
        q = np.maximum(np.expm1(q) if self.rul_log else q, 0.0)
        failure = float(self.failure.predict_proba(x)[0, 1])
        if self.calibrator is not None:
            failure = float(self.calibrator.predict([failure])[0])
        out: dict[str, Any] = {k: record[k] for k in CARRIED}
        out.update(rul_cycles=float(q[len(q) // 2]), rul_p10=float(q[0]), rul_p90=float(q[-1]),
                   failure_probability=min(max(failure, 0.0), 1.0),
                   anomaly_score=min(max(self._anomaly(x), 0.0), 1.0),
                   model_version=self.version, scored_at=int(time.time() * 1000))
        return self.encode(out)


__all__ = ["NaivePredictor"]
