"""``evtwin train`` and ``evtwin model`` as a user runs them (subprocesses, a clean environment):
training writes where the workers look (EVTWIN_MODEL_DIR), promotion and rollback move the
``current`` pointer, bad input is one line that says what to do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from models import registry

REPO = Path(__file__).resolve().parents[2]


def _env(state: Path, models: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVTWIN_")}
    env.update(EVTWIN_STATE_DIR=str(state), EVTWIN_MODEL_DIR=str(models))
    return env


def _evtwin(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=REPO)


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evtwin: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def trained() -> tuple[dict[str, str], Path]:
    """``evtwin train --quick`` (30 packs) with only EVTWIN_MODEL_DIR (and a state dir) set."""
    tmp = Path(tempfile.mkdtemp(prefix="evtwin-model-cli-"))
    models = tmp / "registry"
    env = _env(tmp / "state", models)
    result = _evtwin(["train", "--quick", "--batteries", "30", "--no-mlflow", "--quiet"], env)
    assert result.returncode == 0, result.stderr
    assert "wrote candidate v1" in result.stderr and "evtwin model promote v1" in result.stderr
    return env, models


def test_train_writes_a_candidate_into_evtwin_model_dir(trained: tuple[dict[str, str], Path]) -> None:
    _, models = trained
    assert (models / "versions" / "v1" / "model_card.json").is_file()
    assert not (models / "current").exists()  # a candidate until promoted


def test_promote_list_rollback(trained: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, source = trained
    models = tmp_path / "models"
    assert registry.get_version(source, "v1").card["quick"] is True
    shutil.copytree(source, models)  # a private copy: v1 a candidate
    env = dict(env, EVTWIN_MODEL_DIR=str(models))

    _one_line_error(_evtwin(["model", "rollback"], env), "no current version", "evtwin model promote")
    _one_line_error(_evtwin(["model", "promote", "v9"], env), "no version v9", "versions: v1",
                    "evtwin model list")
    _one_line_error(_evtwin(["model", "promote", "latest"], env), "not a version name")

    done = _evtwin(["model", "promote"], env)  # the newest candidate
    assert done.returncode == 0 and "v1" in done.stderr and "now current" in done.stderr, done.stderr
    assert (models / "current").read_text() == "v1\n"
    _one_line_error(_evtwin(["model", "promote"], env), "no candidate", "evtwin train")
    _one_line_error(_evtwin(["model", "rollback"], env), "nothing to roll back to")

    shutil.copytree(models / "versions" / "v1", models / "versions" / "v2")
    assert _evtwin(["model", "promote", "2"], env).returncode == 0
    listed = _evtwin(["model", "list", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    assert [(v["version"], v["status"]) for v in json.loads(listed.stdout)] == [("v1", "retired"),
                                                                                ("v2", "current")]
    back = _evtwin(["model", "rollback"], env)
    assert back.returncode == 0 and "v1" in back.stderr and "(was v2)" in back.stderr, back.stderr
    assert (models / "current").read_text() == "v1\n"
    table = _evtwin(["model", "list"], env)
    assert table.returncode == 0 and "retired" in table.stdout and "current" in table.stdout


def test_model_commands_on_an_empty_directory(tmp_path: Path) -> None:
    env = _env(tmp_path / "state", tmp_path / "nothing")
    _one_line_error(_evtwin(["model", "list"], env), "no model", "evtwin train")
    _one_line_error(_evtwin(["model", "promote"], env), "no candidate")
    _one_line_error(_evtwin(["evaluate", "--dataset", str(tmp_path)], env))
