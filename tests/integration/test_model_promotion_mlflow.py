"""MLflow follows promotion: training registers a version without moving the alias ``champion``;
promoting moves it, rolling back moves it back, and promoting a version MLflow never saw removes it.
An unreachable MLflow does not stop a promotion (the pointer on disk is what workers follow)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from models import registry
from training import fit
from training.promotion import promote, rollback
from training.train import train

TINY = fit.HyperParams(rul_trees=20, failure_trees=20, anomaly_trees=20, iforest_trees=20)


def _champion(uri: str, name: str = "ev-twin") -> str | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return str(MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(name, "champion").version)
        except MlflowException:
            return None


def test_champion_alias_follows_promotion(tmp_path: Path) -> None:
    root, uri = tmp_path / "models", f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged = train(None, root, quick=True, batteries=30, hp=TINY, seed=5, tracking_uri=uri, log_mlflow=True)
    assert logged.version == "ev-twin@1" and logged.promotion is None
    assert logged.card["mlflow_registered"] == {"ev-twin": "1", "ev-twin-rul": "1", "ev-twin-failure": "1",
                                                "ev-twin-anomaly": "1"}
    assert _champion(uri) is None  # training alone moves no alias

    first = promote(root, "v1", tracking_uri=uri)
    assert first.mlflow and "ev-twin@1" in first.mlflow and not first.mlflow_failed
    assert _champion(uri) == "1" and _champion(uri, "ev-twin-rul") == "1"

    plain = train(None, root, quick=True, batteries=30, hp=TINY, seed=6, tracking_uri=uri, promote=True)
    assert plain.promotion is not None and "removed" in (plain.promotion.mlflow or "")
    assert _champion(uri) is None  # v2 is not in MLflow: no stale champion either

    rollback(root, tracking_uri=uri)
    assert registry.current_name(root) == "v1" and _champion(uri) == "1"

    absent = f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}"
    for name in ("v2", "v1"):  # clearing v1's alias, then setting it: both fail, neither blocks
        moved = promote(root, name, tracking_uri=absent)
        assert registry.current_name(root) == name
        assert moved.mlflow_failed and "not moved" in (moved.mlflow or "")
    assert not (tmp_path / "absent").exists()  # no empty store created on the way

def test_training_needs_a_tracking_uri_to_log() -> None:
    from training.errors import TrainingError

    with pytest.raises(TrainingError, match="tracking_uri"):
        train(None, Path("unused"), quick=True, log_mlflow=True)
