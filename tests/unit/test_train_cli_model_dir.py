"""``evtwin train``/``evaluate`` write and read where the workers look: EVTWIN_MODEL_DIR (the old
EVTWIN_TRAIN_OUT is a deprecated alias that may not contradict it)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streams.cli import CliError, OptionAdder, settings_from, train_cmd


def _parse(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evtwin")
    sub = parser.add_subparsers(dest="command", required=True)
    train_cmd.register(sub, OptionAdder(environ))
    return parser.parse_args(argv)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("EVTWIN_MODEL_DIR", "EVTWIN_TRAIN_OUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout


def test_model_dir_setting_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVTWIN_MODEL_DIR", str(tmp_path / "registry"))
    for argv in (["train"], ["evaluate"], ["model", "list"], ["model", "promote"], ["model", "rollback"]):
        args = _parse(argv, {})
        assert train_cmd.model_dir(args, settings_from(args)) == tmp_path / "registry", argv


def test_out_overrides_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVTWIN_MODEL_DIR", str(tmp_path / "registry"))
    args = _parse(["train", "--out", str(tmp_path / "elsewhere")], {"EVTWIN_TRAIN_OUT": "ignored"})
    assert train_cmd.model_dir(args, settings_from(args)) == tmp_path / "elsewhere"


def test_deprecated_train_out_still_works_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["train"], {"EVTWIN_TRAIN_OUT": str(tmp_path / "old")})
    assert train_cmd.model_dir(args, settings_from(args)) == tmp_path / "old"
    assert "EVTWIN_TRAIN_OUT is deprecated" in capsys.readouterr().err


def test_deprecated_train_out_may_not_contradict_model_dir(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setenv("EVTWIN_MODEL_DIR", str(tmp_path / "registry"))
    args = _parse(["evaluate"], {"EVTWIN_TRAIN_OUT": str(tmp_path / "old")})
    with pytest.raises(CliError, match="unset EVTWIN_TRAIN_OUT"):
        train_cmd.model_dir(args, settings_from(args))
    same = _parse(["train"], {"EVTWIN_TRAIN_OUT": str(tmp_path / "registry")})
    assert train_cmd.model_dir(same, settings_from(same)) == tmp_path / "registry"


def test_help_names_the_variables(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["train", "--help"], ["model", "promote", "--help"]):
        with pytest.raises(SystemExit):
            _parse(argv, {})
    out = " ".join(capsys.readouterr().out.split())
    for var in ("EVTWIN_MODEL_DIR", "EVTWIN_TRAIN_PROMOTE", "EVTWIN_TRAIN_OUT", "EVTWIN_MODEL_NO_MLFLOW"):
        assert var in out, var


def test_every_command_takes_model_dir(tmp_path: Path) -> None:
    """One spelling for the registry everywhere (as worker, bench and retrain spell it); train's
    --out and evaluate's --models stay."""
    for argv in (["train"], ["evaluate"], ["model", "list"], ["model", "promote"], ["model", "rollback"]):
        args = _parse([*argv, "--model-dir", str(tmp_path / "r")], {})
        assert train_cmd.model_dir(args, settings_from(args)) == tmp_path / "r", argv
    args = _parse(["evaluate", "--models", str(tmp_path / "m")], {})
    assert train_cmd.model_dir(args, settings_from(args)) == tmp_path / "m"
