"""``evtwin evaluate --plots DIR`` as a user runs it (subprocesses, a clean environment): a quick
model scores a small fleet it has not seen, the evaluation plots are written as PNG files and the
report lists them under ``plots``; without ``--plots`` nothing is written."""

from __future__ import annotations

import json
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.cli import EVTWIN, cli_env, run_cli
from tests.support.paths import REPO
from tests.support.small_model import small_data

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("rul_pred_vs_true.png", "rul_physics_baseline.png", "failure_calibration.png", "anomaly_roc.png",
         "fault_detection.png")
"""What a generated fleet with faults, failures and healthy packs gets, in the order written."""


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file (asserting the signature and the IHDR chunk first)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", (path, head)
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.fixture(scope="module")
def setup() -> tuple[dict[str, str], Path]:
    """``evtwin train --quick`` (12 packs, seed 5, promoted) and, while it trains, a small generated
    fleet of other packs (48, seed 3) as a Parquet file: the environment and the dataset."""
    tmp = Path(tempfile.mkdtemp(prefix="evtwin-evaluate-plots-"))
    env = cli_env(tmp / "state", EVTWIN_MODEL_DIR=str(tmp / "registry"))
    training = subprocess.Popen([*EVTWIN, "train", "--quick", "--batteries", "12", "--seed", "5", "--no-mlflow",
                                 "--quiet", "--promote"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        dataset = tmp / "fleet" / "ev_fleet.parquet"
        dataset.parent.mkdir()
        frame = small_data().frame  # every plot's labels are there: healthy and fault packs, failures
        healthy = frame.groupby("battery_id")["fault"].agg(lambda fault: bool((fault == "none").all()))
        assert healthy.any() and not healthy.all() and 0 < frame["failure_within_horizon"].mean() < 1
        frame.to_parquet(dataset, index=False)
    finally:
        _, err = training.communicate(timeout=300)
    assert training.returncode == 0, err
    return env, dataset


def test_evaluate_writes_the_plots_and_lists_them(setup: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, dataset = setup
    out = tmp_path / "plots" / "new"  # created, parents too
    result = run_cli(["evaluate", "--dataset", str(dataset), "--plots", str(out), "--json"], env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [Path(p).name for p in report["plots"]] == list(PLOTS)
    assert sorted(p.name for p in out.iterdir()) == sorted(PLOTS)
    for listed in report["plots"]:
        path = Path(listed)
        assert path.parent == out and path.is_file(), listed
        width, height = _png_size(path)
        assert width >= 500 and height >= 400, (listed, width, height)
        assert path.stat().st_size > 15_000, (listed, path.stat().st_size)  # drawn, not an empty canvas
    # the figures the fault plot draws are reported beside it
    metrics = report["metrics"]
    assert metrics["fault_packs"] >= 1 and metrics["false_alarm_pack_rate"] is not None
    assert metrics["anomaly_auroc"] is not None


def test_plots_from_the_environment_and_none_without(setup: tuple[dict[str, str], Path],
                                                    tmp_path: Path) -> None:
    env, dataset = setup
    out = tmp_path / "from-env"
    table = run_cli(["evaluate", "--dataset", str(dataset)], dict(env, EVTWIN_EVALUATE_PLOTS=str(out)))
    assert table.returncode == 0, table.stderr
    assert f"wrote {len(PLOTS)} plots to {out}" in table.stderr, table.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(PLOTS)

    plain = run_cli(["evaluate", "--dataset", str(dataset), "--json"], env, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert "plots" not in json.loads(plain.stdout)
