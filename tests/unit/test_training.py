"""Training: a leak-free battery split, models that beat trivial baselines, saved artifacts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_NAMES
from models.scorer import Scorer
from tests.support.small_model import TINY, small_data, small_model
from training import data
from training.train import train


def test_split_leaks_no_battery() -> None:
    td = small_data()
    split = data.split_rows(td.groups, seed=0, strata=td.anomaly)
    parts = [set(td.groups[idx]) for idx in (split.train, split.calib, split.test)]
    assert split.by == "battery"
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    rows = np.concatenate([split.train, split.calib, split.test])
    assert len(rows) == len(np.unique(rows)) == len(td.groups)
    assert all(len(p) >= 5 for p in parts)


def test_model_beats_trivial_baselines_on_held_out_batteries() -> None:
    m = small_model().metrics
    assert m["rul_mae_cycles"] < 0.6 * m["rul_baseline_mae_cycles"], m  # baseline: training mean
    assert m["rul_r2"] > 0.4, m  # the mean scores 0 (or below)
    assert 0.6 < m["rul_band_coverage"] < 0.97, m
    assert m["failure_roc_auc"] > 0.8, m  # prevalence scores 0.5
    assert m["failure_brier"] < 0.8 * m["failure_baseline_brier"], m  # baseline: prevalence
    assert m["anomaly_auroc_observable"] > 0.8, m
    # calibrated for a fleet in service: its mean probability is the rate a fleet's readings see,
    # not the dataset's (calibrated on the dataset's rows alone it came out ~5x that rate)
    assert m["failure_fleet_prevalence"] < 0.5 * m["failure_prevalence"], m
    assert abs(m["failure_fleet_mean_probability"] - m["failure_fleet_prevalence"]) < 0.5 * m["failure_fleet_prevalence"], m


def test_kaggle_file_trains_with_its_own_labels_and_a_time_split(tmp_path: Path) -> None:
    from datasets.loader import KAGGLE_FILENAME

    rng = np.random.default_rng(0)
    n = 600
    soh = np.linspace(1.0, 0.8, n)
    frame = pd.DataFrame({
        "Timestamp": pd.date_range("2020-01-01", periods=n, freq="15min").strftime("%Y-%m-%d %H:%M:%S"),
        "SoC": rng.uniform(0.1, 0.9, n), "SoH": soh, "Battery_Voltage": rng.normal(370, 5, n),
        "Battery_Current": rng.normal(0, 40, n), "Battery_Temperature": rng.normal(28, 4, n),
        "Charge_Cycles": np.arange(n), "Power_Consumption": rng.normal(5, 3, n),
        "Ambient_Temperature": rng.normal(20, 5, n), "Motor_RPM": rng.uniform(0, 5000, n),
        "RUL": (soh - 0.8) * 5000, "Failure_Probability": (soh < 0.83).astype(int),
    })
    path = tmp_path / KAGGLE_FILENAME
    frame.to_csv(path, index=False)
    result = train(path, tmp_path / "models", hp=TINY)
    assert result.card["dataset"]["kind"] == "kaggle" and result.card["split"]["by"] == "time"
    assert result.card["anomaly_detector"] == "iforest"  # no fault labels to supervise a detector
    assert np.isnan(result.metrics["anomaly_auroc"])
    assert np.isfinite(result.metrics["rul_mae_cycles"])
    Scorer.load(result.model_dir).score(np.zeros((2, len(FEATURE_NAMES)), dtype=np.float32))


def test_mlflow_run_holds_metrics_and_champion_loads_and_predicts() -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    result = small_model()
    assert result.run_id and result.version.startswith("ev-twin@")
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.metrics["rul_r2"] == pytest.approx(result.metrics["rul_r2"])
    assert run.data.metrics["failure_roc_auc"] == pytest.approx(result.metrics["failure_roc_auc"])
    champion = client.get_model_version_by_alias("ev-twin", "champion")
    assert f"ev-twin@{champion.version}" == result.version
    for part in ("rul", "failure", "anomaly"):
        assert client.get_model_version_by_alias(f"ev-twin-{part}", "champion").run_id == result.run_id
    X = small_data().X[:50]
    with warnings.catch_warnings():  # MLflow's own deprecation chatter while loading
        warnings.simplefilter("ignore")
        model = mlflow.pyfunc.load_model("models:/ev-twin@champion")
        rul = mlflow.pyfunc.load_model("models:/ev-twin-rul@champion")
        predicted = model.predict(pd.DataFrame(X, columns=list(FEATURE_NAMES)))
        assert np.asarray(rul.predict(pd.DataFrame(X, columns=list(FEATURE_NAMES)))).shape[0] == 50
    expected = Scorer.load(result.model_dir).score(X)
    for key, values in expected.items():
        np.testing.assert_allclose(predicted[key].to_numpy(), values, rtol=1e-6, err_msg=key)


def test_artifacts_and_card_are_complete() -> None:
    result = small_model()
    names = {p.name for p in result.model_dir.iterdir()}
    assert {"rul_xgb_model.joblib", "failure_xgb_model.joblib", "feature_names.joblib",
            "anomaly_iforest.joblib", "model_card.json", "metrics.json"} <= names
    assert not [n for n in names if n.startswith(".tmp")]
    card = json.loads((result.model_dir / "model_card.json").read_text())
    assert card["feature_names"] == list(FEATURE_NAMES)
    assert card["version"] == result.version and card["dataset"]["sha256"]
    metrics = json.loads((result.model_dir / "metrics.json").read_text())
    for key in ("rul_r2", "rul_mae_cycles", "rul_band_coverage", "failure_roc_auc", "anomaly_auroc"):
        assert np.isfinite(metrics[key]), key


def test_attach_replays_start_each_training_pack_anew_mid_life() -> None:
    from training.data import ATTACH_SPAN, attach_replays

    td = small_data()
    batteries = np.unique(td.groups)[:6]
    rows = np.flatnonzero(np.isin(td.groups, batteries))
    X, index = attach_replays(td, rows, seed=0)
    history = FEATURE_NAMES.index("history_days")
    days = td.frame["Service_Days"].to_numpy(dtype=np.float64)
    assert len(X) == len(index) and set(td.groups[index]) == set(batteries)
    for battery in batteries:
        mine = np.flatnonzero(td.groups[index] == battery)
        own = np.flatnonzero(td.groups == battery)
        first = index[mine[0]]
        # the replay starts within the span of the pack's rows and runs to its last row ...
        assert ATTACH_SPAN[0] * len(own) - 1 <= first - own[0] <= ATTACH_SPAN[1] * len(own)
        assert index[mine[-1]] == own[-1]
        # ... with a twin that has seen nothing before it, where the from-new replay has seen it all
        assert X[mine[0], history] == 0.0 and td.X[first, history] == pytest.approx(days[first] - days[own[0]])
        np.testing.assert_allclose(X[mine, history], days[index[mine]] - days[first], rtol=1e-6)


def test_fleet_weights_stand_for_steady_reporting_and_a_repair_after_a_fault() -> None:
    from models.physics.params import FaultParams

    start = pd.Timestamp("2024-01-01", tz="UTC")
    repair = FaultParams().repair_after_days
    rows = [("A", d, pd.NaT) for d in (0.1, 0.6, 1.2, 1.7, 5.3, 5.8)]  # two readings a sampled day
    onset = start + pd.Timedelta(days=10)
    rows += [("B", d, onset) for d in (0.5, 10.5 + repair - 1, 10.5 + repair + 5)]
    rows += [("LIVE", float("nan"), pd.NaT)]  # a live fleet's reading collected for retraining
    frame = pd.DataFrame({"battery_id": [r[0] for r in rows], "Service_Days": [r[1] for r in rows],
                          "fault_onset": [r[2] for r in rows],
                          "Timestamp": [start + pd.Timedelta(days=0 if r[1] != r[1] else r[1]) for r in rows]})
    w = data.fleet_weights(frame)
    assert w.mean() == pytest.approx(1.0)
    a = w / w[0]
    # day 0 stands for 1 day (the next sampled day is day 1), day 1 for 4, the last day (5) for
    # the gap before it (4); each day shared by its two readings
    assert a[:6] == pytest.approx([1, 1, 4, 4, 4, 4])
    # B's second day stands for 6 days, but the pack is replaced half a day into them (its reading
    # is 59.5 days after the onset); past that, nothing
    assert a[7] == pytest.approx(1.0) and w[8] == 0.0
    assert a[9] == pytest.approx(4.0)  # the live reading: the median of the dated rows' weights
    # a dataset of an older generator (no service days) is not weighted
    assert (data.fleet_weights(frame.drop(columns="Service_Days")) == 1.0).all()
