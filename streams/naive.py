"""The naive baseline of ``evtwin bench pipeline``: the seed's predictor, one event at a time.

Kept only to measure against: decode, validate, build the features of one row, call each model's
scikit-learn-API ``predict`` for that row, encode, produce. Same inputs and outputs as the real
path, so the comparison is fair.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from schemas.codec import AvroCodec
from streams.scoring import CARRIED
from streams.validation import telemetry_problem


class NaivePredictor:
    """Scores one raw telemetry value at a time."""

    def __init__(self, model_dir: Path) -> None:
        from models.features import features_from_records
        from models.scorer import FAILURE_FILE, RUL_FILE

        self.features = features_from_records
        self.rul = joblib.load(model_dir / RUL_FILE)
        self.failure = joblib.load(model_dir / FAILURE_FILE)
        self.decode = AvroCodec("telemetry").decode
        self.encode = AvroCodec("prediction").encode

    def handle(self, value: bytes) -> bytes:
        """Return the encoded prediction of one raw telemetry value."""
        record = self.decode(value)
        now = int(time.time() * 1000)
        if telemetry_problem(record, now, 300_000, 30 * 86_400_000):
            raise ValueError("invalid reading in the benchmark input")
        x = self.features([record])
        rul = np.expm1(self.rul.predict(x))  # the RUL model predicts log(1 + cycles) quantiles
        failure = self.failure.predict_proba(x)[:, 1]
        band = rul[0] if getattr(rul, "ndim", 1) > 1 else [rul[0]] * 3
        out: dict[str, Any] = {k: record[k] for k in CARRIED}
        out.update(rul_cycles=float(band[1] if len(band) > 2 else band[0]),
                   rul_p10=float(band[0]), rul_p90=float(band[-1]),
                   failure_probability=float(failure[0]), anomaly_score=0.0,
                   model_version="naive", scored_at=int(time.time() * 1000))
        return self.encode(out)


__all__ = ["NaivePredictor"]
