"""Score workers follow the registry's ``current`` pointer: a promotion (or rollback) is picked up by
the next poll, a candidate is not, and a model directory in the old flat layout still serves."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from models import registry
from models.errors import ModelNotFoundError
from models.features import FEATURE_NAMES
from models.scorer import ARTIFACT_FILES, Scorer
from streams.scoring.model_source import ModelSource
from streams.settings import Settings
from training import fit
from training.promotion import promote, rollback
from training.train import TrainResult, train

TINY = fit.HyperParams(rul_trees=20, failure_trees=20, anomaly_trees=20, iforest_trees=20)


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    """One tiny model (30 simulated packs, few trees: a few seconds), a candidate in its registry."""
    root = Path(tempfile.mkdtemp(prefix="evtwin-source-")) / "models"
    return train(None, root, quick=True, batteries=30, hp=TINY, seed=5)


def _copy_as_version(source: Path, root: Path, tag: str) -> registry.Version:
    """The trained model's objects as a new candidate of ``root`` under another model version."""
    loaded = registry.load_model(source, ARTIFACT_FILES)
    card = {k: v for k, v in loaded.card.items() if k != "files"}
    card["version"] = f"file:{tag}"
    return registry.add_version(root, loaded.objects, card, loaded.card["metrics"])


def _source(root: Path, tmp_path: Path) -> ModelSource:
    return ModelSource(Settings(model_dir=root, state_dir=tmp_path / "state"))


def test_train_adds_a_candidate_and_promote_makes_it_serve(trained: TrainResult) -> None:
    root = trained.model_dir.parent.parent
    assert trained.registry_version == "v1" and trained.promotion is None
    assert trained.model_dir == root / "versions" / "v1"
    assert registry.get_version(root, "v1").status == registry.CANDIDATE
    with pytest.raises(ModelNotFoundError, match="evtwin model promote v1"):
        Scorer.load(root)
    scorer = Scorer.load(trained.model_dir)  # a version directory is a complete model
    out = scorer.score(np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32))
    assert out["rul_p50"].shape == (3,)


def test_poll_picks_up_a_promotion_and_ignores_a_candidate(trained: TrainResult, tmp_path: Path) -> None:
    root = tmp_path / "models"
    _copy_as_version(trained.model_dir, root, "one")
    promote(root, "v1")
    source = _source(root, tmp_path)
    assert source.current().version == "file:one" and source.current().registry_version == "v1"
    assert source.poll() is None

    _copy_as_version(trained.model_dir, root, "two")  # v2: a candidate, not served
    assert source.poll() is None and source.current().version == "file:one"

    result = promote(root)  # the newest candidate
    assert result.promotion.current.name == "v2" and result.promotion.previous == "v1"
    new = source.poll()
    assert new is not None and new.version == "file:two" and new.registry_version == "v2"
    assert source.current() is new and source.poll() is None

    rollback(root)
    back = source.poll()
    assert back is not None and back.version == "file:one"


def test_flat_layout_serves_and_keeps_serving_after_adoption(trained: TrainResult, tmp_path: Path) -> None:
    flat = tmp_path / "models"
    loaded = registry.load_model(trained.model_dir, ARTIFACT_FILES)
    registry.save_artifacts(flat, loaded.objects, {k: v for k, v in loaded.card.items() if k != "files"},
                            loaded.card["metrics"])
    source = _source(flat, tmp_path)
    old = source.current()
    assert old.registry_version is None

    _copy_as_version(trained.model_dir, flat, "next")  # adopts the flat model as v1
    assert [(v.name, v.status) for v in registry.list_versions(flat)] == [("v1", "current"), ("v2", "candidate")]
    assert source.poll() is None  # the same model: no reload
    promote(flat, "v2")
    assert source.poll().version == "file:next"  # type: ignore[union-attr]


def test_a_version_that_does_not_load_is_not_promoted(trained: TrainResult, tmp_path: Path) -> None:
    from models.errors import FeatureMismatchError

    root = tmp_path / "models"
    _copy_as_version(trained.model_dir, root, "good")
    promote(root, "v1")
    loaded = registry.load_model(trained.model_dir, ARTIFACT_FILES)
    objects = dict(loaded.objects, **{"feature_names.joblib": ["something", "else"]})
    registry.add_version(root, objects, {"version": "file:bad"}, {})
    with pytest.raises(FeatureMismatchError):
        promote(root, "v2")
    assert registry.current_name(root) == "v1"
