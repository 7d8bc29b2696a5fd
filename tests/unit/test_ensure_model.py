"""``evtwin up`` on first run: a quick model is trained and made current when the registry has none;
a registry with only candidates is the user's call (one line that says which to promote)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from models import registry
from streams.cli import CliError
from streams.cli.stack_cmd import ensure_model
from streams.settings import Settings


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls of ``training.train.train`` (not run: recorded)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("training.train.train", lambda *a, **kw: calls.append({"args": a, **kw}))
    return calls


def _settings(tmp_path: Path) -> Settings:
    return Settings(model_dir=tmp_path / "models", state_dir=tmp_path / "state")


def test_empty_registry_gets_a_quick_current_model(tmp_path: Path, trained: list[dict[str, Any]]) -> None:
    ensure_model(_settings(tmp_path), Console(quiet=True))
    assert trained == [{"args": (None, tmp_path / "models"), "quick": True, "promote": True}]


def test_candidates_without_a_current_one_are_not_overruled(tmp_path: Path,
                                                            trained: list[dict[str, Any]]) -> None:
    registry.add_version(tmp_path / "models", {"feature_names.joblib": []}, {}, {})
    with pytest.raises(CliError, match="v1 is a candidate.*evtwin model promote v1"):
        ensure_model(_settings(tmp_path), Console(quiet=True))
    assert trained == []


def test_a_current_model_is_reused(tmp_path: Path, trained: list[dict[str, Any]],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Path] = []
    monkeypatch.setattr("models.scorer.Scorer.load", lambda path: loaded.append(path))
    ensure_model(_settings(tmp_path), Console(quiet=True))
    assert loaded == [tmp_path / "models"] and trained == []
