"""The live scorer: loads verified artifacts, refuses a feature mismatch, scores whole batches."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from models.errors import FeatureMismatchError, ModelError, ModelNotFoundError
from models.features import FEATURE_NAMES, features_from_frame
from models.registry import fingerprint, sha256_file
from models.scorer import OUTPUT_KEYS, Scorer
from tests.support.paths import REPO
from tests.support.small_model import small_data, small_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the small trained model."""
    return Path(shutil.copytree(small_model().model_dir, tmp_path / "models"))


def test_scores_have_the_contract() -> None:
    scorer = Scorer.load(small_model().model_dir)
    X = features_from_frame(small_data().frame.iloc[:1000])
    out = scorer.score(X)
    assert set(out) == set(OUTPUT_KEYS)
    assert all(v.shape == (1000,) and np.isfinite(v).all() for v in out.values())
    assert (out["rul_p10"] >= 0).all()
    assert (out["rul_p10"] <= out["rul_p50"]).all() and (out["rul_p50"] <= out["rul_p90"]).all()
    for key in ("failure_probability", "anomaly_score"):
        assert ((out[key] >= 0) & (out[key] <= 1)).all(), key
    assert scorer.feature_names == FEATURE_NAMES
    assert scorer.version == small_model().version
    assert scorer.score(X[:0])["rul_p50"].shape == (0,)


def test_wrong_feature_count_raises() -> None:
    scorer = Scorer.load(small_model().model_dir)
    with pytest.raises(ModelError, match="shape"):
        scorer.score(np.zeros((3, len(FEATURE_NAMES) - 1), dtype=np.float32))


def _rewrite(model_dir: Path, name: str, obj: object) -> None:
    """Replace one artifact and update its hash in the card (a consistent but different model)."""
    joblib.dump(obj, model_dir / name)
    card = json.loads((model_dir / "model_card.json").read_text())
    card["files"][name] = sha256_file(model_dir / name)
    (model_dir / "model_card.json").write_text(json.dumps(card))


def test_feature_mismatch_raises_a_clear_error(model_dir: Path) -> None:
    _rewrite(model_dir, "feature_names.joblib", list(FEATURE_NAMES[:-1]) + ["mystery_feature"])
    with pytest.raises(FeatureMismatchError, match="mystery_feature.*retrain"):
        Scorer.load(model_dir)


def test_missing_model_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="evtwin train"):
        Scorer.load(tmp_path)
    assert fingerprint(tmp_path) is None


def test_tampered_artifact_is_refused(model_dir: Path) -> None:
    with (model_dir / "rul_xgb_model.joblib").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="do not match"):
        Scorer.load(model_dir)


def test_fingerprint_changes_when_a_model_is_promoted(model_dir: Path) -> None:
    before = fingerprint(model_dir)
    scorer = Scorer.load(model_dir)
    assert scorer.fingerprint == before
    _rewrite(model_dir, "feature_names.joblib", list(FEATURE_NAMES))
    assert fingerprint(model_dir) != before


def test_serving_imports_stay_light() -> None:
    """The agents import features and scorer; MLflow and matplotlib must not come with them."""
    code = ("import sys, models.features, models.scorer, models.registry; "
            "heavy = [m for m in ('mlflow', 'matplotlib', 'training') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_naive_baseline_computes_what_the_scorer_computes() -> None:
    """The benchmark's one-at-a-time baseline does the same work with the same results, so the
    speed-up `evtwin bench pipeline` reports compares like with like."""
    import time

    from models.physics.fleet import Fleet
    from schemas.codec import AvroCodec
    from streams.sources.simulator import telemetry_records
    from streams.tools.naive import NaivePredictor

    fleet = Fleet(10, seed=4, start_time_s=time.time())
    records = []
    for tick in range(6):
        fleet.step(60.0, 86_400.0)
        readings = fleet.readings()
        seq = np.full(10, tick)
        records += [r for _, r in telemetry_records(readings, fleet.battery_ids, seq, int(time.time() * 1000))]
    assert len(records) >= 40
    model = small_model().model_dir
    naive, scorer = NaivePredictor(model), Scorer.load(model)
    telemetry, prediction = AvroCodec("telemetry"), AvroCodec("prediction")
    expected = scorer.score_records(records)
    for i, record in enumerate(records):
        got = prediction.decode(naive.handle(telemetry.encode(record)))
        assert got["event_id"] == record["event_id"] and got["model_version"] == scorer.version
        for key, ours in (("rul_p10", "rul_p10"), ("rul_cycles", "rul_p50"), ("rul_p90", "rul_p90"),
                          ("failure_probability", "failure_probability"), ("anomaly_score", "anomaly_score")):
            assert got[key] == pytest.approx(expected[ours][i], rel=1e-4, abs=1e-4), (key, i)
