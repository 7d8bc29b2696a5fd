"""The model registry on disk: versions as candidates, an atomic ``current`` pointer, promotion,
rollback, listing, and the old flat layout (no trained model needed: tiny stand-in objects)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from models import registry
from models.errors import ModelError, ModelNotFoundError, RegistryError, UnknownVersionError


def _add(root: Path, tag: str) -> registry.Version:
    """A stand-in model (its objects are plain data: the registry never unpickles them)."""
    objects = {"rul_xgb_model.joblib": {"tag": tag}, "feature_names.joblib": ["a", "b"]}
    card = {"name": "ev-twin", "created_at": "2026-01-01T00:00:00+00:00", "metrics": {"rul_r2": 0.5}}
    return registry.add_version(root, objects, card, {"rul_r2": 0.5})


def _statuses(root: Path) -> dict[str, str]:
    return {v.name: v.status for v in registry.list_versions(root)}


def test_training_writes_a_candidate_that_nothing_loads(tmp_path: Path) -> None:
    v1 = _add(tmp_path, "a")
    assert v1.name == "v1" and v1.status == registry.CANDIDATE
    assert v1.path == tmp_path / "versions" / "v1"
    assert {p.name for p in v1.path.iterdir()} == {"rul_xgb_model.joblib", "feature_names.joblib",
                                                    "metrics.json", "model_card.json"}
    assert v1.model_version.startswith("file:") and v1.metrics == {"rul_r2": 0.5}
    assert not (tmp_path / "current").exists()
    assert registry.fingerprint(tmp_path) is None
    with pytest.raises(ModelNotFoundError, match=r"candidates: v1.*evtwin model promote v1"):
        registry.locate(tmp_path)
    assert registry.latest_candidate(tmp_path) == v1


def test_promote_rollback_and_list(tmp_path: Path) -> None:
    for tag in "abc":
        _add(tmp_path, tag)
    assert _statuses(tmp_path) == {"v1": "candidate", "v2": "candidate", "v3": "candidate"}

    first = registry.promote(tmp_path, "v1")
    assert first.changed and first.previous is None and first.current.status == registry.CURRENT
    assert registry.locate(tmp_path) == (tmp_path / "versions" / "v1", "v1")
    fp1 = registry.fingerprint(tmp_path)
    second = registry.promote(tmp_path, 3)  # "3", 3 and "v3" name the same version
    assert second.previous == "v1" and second.current.name == "v3"
    assert registry.fingerprint(tmp_path) not in (None, fp1)
    assert _statuses(tmp_path) == {"v1": "retired", "v2": "candidate", "v3": "current"}
    assert registry.latest_candidate(tmp_path).name == "v2"  # type: ignore[union-attr]
    assert not registry.promote(tmp_path, "v3").changed  # already current: nothing happens

    back = registry.rollback(tmp_path)
    assert (back.previous, back.current.name) == ("v3", "v1")
    assert _statuses(tmp_path) == {"v1": "current", "v2": "candidate", "v3": "retired"}
    assert registry.fingerprint(tmp_path) == fp1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback(tmp_path)

    record = json.loads((tmp_path / "registry.json").read_text())
    assert record["history"] == ["v1"]
    assert record["versions"]["v3"]["retired_at"] and "retired_at" not in record["versions"]["v1"]


def test_rollback_walks_back_through_the_promotions(tmp_path: Path) -> None:
    for tag in "abc":
        _add(tmp_path, tag)
    for name in ("v1", "v2", "v3"):
        registry.promote(tmp_path, name)
    assert registry.rollback(tmp_path).current.name == "v2"
    assert registry.rollback(tmp_path).current.name == "v1"
    registry.promote(tmp_path, "v3")
    assert registry.rollback(tmp_path).current.name == "v1"


def test_unknown_versions_and_nothing_current_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no current version"):
        registry.rollback(tmp_path)
    _add(tmp_path, "a")
    with pytest.raises(UnknownVersionError, match=r"no version v7 .*versions: v1.*evtwin model list"):
        registry.promote(tmp_path, "v7")
    with pytest.raises(UnknownVersionError, match="not a version name"):
        registry.promote(tmp_path, "../v1")
    (tmp_path / "current").write_text("garbage\n")
    with pytest.raises(ModelError, match="not a version name"):
        registry.locate(tmp_path)


def test_a_check_that_fails_leaves_the_current_version(tmp_path: Path) -> None:
    _add(tmp_path, "a")
    _add(tmp_path, "b")
    registry.promote(tmp_path, "v1")

    def refuse(version: registry.Version) -> None:
        raise ModelError(f"{version.name} does not load")

    with pytest.raises(ModelError, match="v2 does not load"):
        registry.promote(tmp_path, "v2", check=refuse)
    assert registry.current_name(tmp_path) == "v1"
    assert _statuses(tmp_path)["v2"] == "candidate"


def test_version_names_are_never_reused(tmp_path: Path) -> None:
    _add(tmp_path, "a")
    registry.promote(tmp_path, "v1")
    _add(tmp_path, "b")
    shutil.rmtree(tmp_path / "versions" / "v2")  # a version removed by hand
    assert _add(tmp_path, "c").name == "v3"


def test_pointer_is_replaced_atomically(tmp_path: Path) -> None:
    """Readers never see a half-written or missing pointer while writers flip it."""
    _add(tmp_path, "a")
    _add(tmp_path, "b")
    registry.promote(tmp_path, "v1")
    stop = threading.Event()
    errors: list[BaseException] = []

    def flip() -> None:
        try:
            for i in range(150):
                registry.promote(tmp_path, "v2" if i % 2 == 0 else "v1")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    writer = threading.Thread(target=flip)
    writer.start()
    seen = set()
    while not stop.is_set():
        path, name = registry.locate(tmp_path)
        seen.add(name)
        assert path == tmp_path / "versions" / str(name)
    writer.join()
    assert not errors and seen <= {"v1", "v2"}
    assert (tmp_path / "current").read_text() == "v1\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    assert not [p.name for p in (tmp_path / "versions").iterdir() if p.name.startswith(".tmp")]


def test_flat_layout_is_one_current_version_and_is_adopted_on_first_write(tmp_path: Path) -> None:
    card = registry.save_artifacts(tmp_path, {"rul_xgb_model.joblib": {"tag": "old"}},
                                   {"created_at": "2025-01-01T00:00:00+00:00"}, {"rul_r2": 0.1})
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "plot.png").write_bytes(b"png")
    assert registry.locate(tmp_path) == (tmp_path, None)
    fp = registry.fingerprint(tmp_path)
    assert fp is not None
    listed = registry.list_versions(tmp_path)
    assert [(v.name, v.status) for v in listed] == [(registry.FLAT, registry.CURRENT)]
    loaded = registry.load_model(tmp_path, ("rul_xgb_model.joblib",))
    assert loaded.objects["rul_xgb_model.joblib"] == {"tag": "old"} and loaded.version is None

    new = _add(tmp_path, "new")  # the first write adopts the flat model as v1, current
    assert new.name == "v2" and new.status == registry.CANDIDATE
    assert _statuses(tmp_path) == {"v1": "current", "v2": "candidate"}
    v1 = registry.get_version(tmp_path, "v1")
    assert v1.model_version == card["version"] and (v1.path / "artifacts" / "plot.png").is_file()
    assert not (tmp_path / "model_card.json").exists() and not (tmp_path / "rul_xgb_model.joblib").exists()
    assert registry.fingerprint(tmp_path) == fp  # same model: workers do not reload it
    registry.promote(tmp_path, "v2")
    assert registry.rollback(tmp_path).current.name == "v1"  # back to the old flat model


def test_promoting_into_a_flat_directory_adopts_it_too(tmp_path: Path) -> None:
    registry.save_artifacts(tmp_path, {"rul_xgb_model.joblib": {"tag": "old"}}, {}, {})
    (tmp_path / "versions").mkdir()
    # a version copied in by hand, next to the flat model
    registry.save_artifacts(tmp_path / "versions" / "v5", {"rul_xgb_model.joblib": {"tag": "x"}}, {}, {})
    registry.promote(tmp_path, "v5")
    assert _statuses(tmp_path) == {"v5": "current", "v6": "retired"}
    assert registry.rollback(tmp_path).current.name == "v6"
