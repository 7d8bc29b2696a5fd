"""``python -m streams.tools.replay_live``: the live fleet replayed through the twin and a model."""

from __future__ import annotations

import json

import pytest

from streams.tools import replay_live
from tests.support.small_model import small_model


def test_the_replay_scores_every_reading_after_the_warmup_against_its_truth(
        capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = small_model().model_dir
    replay_live.main(["--model-dir", str(model_dir), "--batteries", "40", "--ticks", "30", "--warmup", "10",
                      "--json"])
    report = json.loads(capsys.readouterr().out)
    # 20 ticks of 40 packs are scored (a pack whose link is down sends nothing)
    assert 0.9 * 40 * 20 <= report["readings"] <= 40 * 20
    assert sum(b["readings"] for b in report["failure_bins"]) == report["readings"]
    assert 0.0 <= report["failure_mean_probability"] <= 1.0 and 0.0 <= report["failure_prevalence"] <= 1.0
    # the bins split the same readings: their counts weigh their rates up to the whole rate
    weighted = sum(b["readings"] * b["observed_rate"] for b in report["failure_bins"]) / report["readings"]
    assert weighted == pytest.approx(report["failure_prevalence"])
    assert 0.0 <= report["failure_brier"] <= 1.0
    assert 0.0 <= report["rul_band_coverage"] <= 1.0 and report["rul_mae_cycles"] >= 0.0


def test_a_warmup_as_long_as_the_run_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        replay_live.main(["--ticks", "10", "--warmup", "10"])
    assert "--warmup must be" in capsys.readouterr().err
