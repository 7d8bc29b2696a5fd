"""A small simulated dataset and a small model trained on it, built once per test process and
shared by the training, scorer and feature tests (the tests check behaviour, not quality)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from training import data, fit
from training.train import TrainResult, train

TINY = fit.HyperParams(rul_trees=60, failure_trees=60, anomaly_trees=60, iforest_trees=50)
"""Small models: the tests check behaviour, not the quality bars (measured on 500 batteries)."""


@functools.cache
def small_data() -> data.TrainingData:
    """48 batteries simulated with the quick settings (~5 s), shared by the test modules."""
    return data.generate(48, seed=3, quick=True)


@functools.cache
def small_model() -> TrainResult:
    """A model trained on :func:`small_data` in a temporary directory, logged to a temporary MLflow."""
    root = Path(tempfile.mkdtemp(prefix="evtwin-train-"))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return train(small_data(), root / "models", hp=TINY, seed=3, tracking_uri=uri, log_mlflow=True,
                 promote=True)
