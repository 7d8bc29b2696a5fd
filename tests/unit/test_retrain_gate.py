"""The promotion gate: better on the primary metric and not worse on any gated one, or rejected
with the reason; the held-out batteries are the same in every run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.errors import TrainingError
from training.gate import Thresholds, compare
from training.retrain import held_out

GATE = Thresholds.parse("rul_mae_cycles", "failure_brier,anomaly_auroc,rul_band_coverage_error", 0.02, 0.0)
CHAMPION = {"rul_mae_cycles": 100.0, "failure_brier": 0.10, "anomaly_auroc": 0.90, "rul_band_coverage": 0.80}


def test_better_on_the_primary_and_not_worse_elsewhere_is_promoted() -> None:
    result = compare(dict(CHAMPION, rul_mae_cycles=90.0, failure_brier=0.101), CHAMPION, GATE)
    assert result.promote and result.decision == "promoted"
    assert "rul_mae_cycles 90 vs champion's 100" in result.reason
    primary = next(c for c in result.checks if c.metric == "rul_mae_cycles")
    assert primary.change == pytest.approx(0.1)


def test_worse_on_a_gated_metric_is_rejected_even_when_the_primary_improves() -> None:
    result = compare(dict(CHAMPION, rul_mae_cycles=50.0, anomaly_auroc=0.85), CHAMPION, GATE)
    assert not result.promote and result.reason.startswith("worse on anomaly_auroc 0.85 vs 0.9")


def test_equal_is_not_better_and_a_worse_primary_is_rejected() -> None:
    assert not compare(dict(CHAMPION), CHAMPION, GATE).promote
    worse = compare(dict(CHAMPION, rul_mae_cycles=120.0), CHAMPION, GATE)
    assert not worse.promote and "not better" in worse.reason


def test_thresholds_are_relative_and_the_band_is_judged_by_its_distance_to_80_percent() -> None:
    demanding = Thresholds.parse("rul_mae_cycles", "failure_brier", 0.0, 0.05)
    assert not compare(dict(CHAMPION, rul_mae_cycles=97.0), CHAMPION, demanding).promote  # 3 % < 5 %
    assert compare(dict(CHAMPION, rul_mae_cycles=94.0), CHAMPION, demanding).promote
    too_wide = dict(CHAMPION, rul_mae_cycles=90.0, rul_band_coverage=0.95)  # 0.15 from the target
    assert not compare(too_wide, CHAMPION, GATE).promote


def test_unmeasurable_metrics_are_skipped_but_an_unmeasurable_primary_rejects() -> None:
    result = compare(dict(CHAMPION, rul_mae_cycles=90.0, anomaly_auroc=math.nan), CHAMPION, GATE)
    assert result.promote
    assert any(c.metric == "anomaly_auroc" and "skipped" in c.note for c in result.checks)
    assert not compare(dict(CHAMPION, rul_mae_cycles=math.nan), CHAMPION, GATE).promote


def test_no_champion_promotes_and_an_unknown_metric_is_a_clear_error() -> None:
    assert compare(CHAMPION, None, GATE).promote
    with pytest.raises(TrainingError, match="does not know the metric.*EVTWIN_RETRAIN_GATED_METRICS"):
        Thresholds.parse("rul_mae_cycles", "rul_mea_cycles", 0.02, 0.0)


def test_the_same_batteries_are_held_out_every_run() -> None:
    ids = np.array([f"BATTERY_{k:04d}" for k in range(1000)])
    first = held_out(ids, 0.2)
    assert np.array_equal(first, held_out(ids[::-1], 0.2)[::-1])
    assert 0.15 < first.mean() < 0.25
    rows = np.repeat(ids[:10], 3)  # every row of a battery goes the same way
    flags = held_out(rows, 0.5).reshape(10, 3)
    assert (flags == flags[:, :1]).all()


def test_by_default_the_failure_probability_is_judged_as_a_fleet_in_service_sees_it() -> None:
    # A candidate calibrated for the fleet: worse on the dataset's unweighted rows (their
    # long-running faults are rows no fleet has), better on the fleet-weighted ones.
    champion = {"rul_mae_cycles": 100.0, "rul_band_coverage": 0.80, "anomaly_auroc": 0.90,
                "failure_brier": 0.040, "failure_roc_auc": 0.936,
                "failure_fleet_brier": 0.0118, "failure_fleet_roc_auc": 0.875}
    candidate = dict(champion, rul_mae_cycles=99.0, failure_brier=0.048, failure_roc_auc=0.916,
                     failure_fleet_brier=0.0075, failure_fleet_roc_auc=0.888)
    gate = Thresholds()
    assert {"failure_fleet_brier", "failure_fleet_roc_auc"} <= set(gate.gated)
    assert not {"failure_brier", "failure_roc_auc"} & set(gate.gated)
    assert compare(candidate, champion, gate).promote
    # the unweighted figures can still be gated on demand, and then refuse it
    unweighted = Thresholds.parse("rul_mae_cycles", "failure_brier", 0.02, 0.0)
    assert not compare(candidate, champion, unweighted).promote
