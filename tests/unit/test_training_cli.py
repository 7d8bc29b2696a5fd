"""``evtwin train`` and ``evtwin evaluate``: options with environment defaults, metrics out."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.scorer import Scorer
from streams.cli import CliError, OptionAdder, settings_from, train_cmd
from tests.support.small_model import small_data, small_model
from training.fit import HyperParams


def _run(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    """Parse ``argv`` with only the train/evaluate commands registered, then run the handler."""
    parser = argparse.ArgumentParser(prog="evtwin")
    sub = parser.add_subparsers(dest="command", required=True)
    train_cmd.register(sub, OptionAdder(environ or {}))
    args = parser.parse_args(argv)
    return int(args.handler(args, settings_from(args)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ds") / "ev_fleet.parquet"
    small_data().frame.to_parquet(path, index=False)
    return path


def test_train_on_a_dataset_with_env_defaults(tmp_path: Path, dataset: Path) -> None:
    env = {"EVTWIN_TRAIN_OUT": str(tmp_path / "m"), "EVTWIN_TRAIN_NO_MLFLOW": "1", "EVTWIN_TRAIN_QUIET": "1",
           "EVTWIN_TRAIN_QUICK": "1", "EVTWIN_TRAIN_PROMOTE": "1"}
    assert _run(["train", "--dataset", str(dataset)], env) == 0
    scorer = Scorer.load(tmp_path / "m")
    assert scorer.version.startswith("file:") and scorer.card["dataset"]["source"] == str(dataset)
    assert scorer.card["quick"] is True


def test_evaluate_prints_the_metric_keys(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["evaluate", "--dataset", str(dataset), "--models", str(small_model().model_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model_version"] == small_model().version
    for key in ("rul_r2", "rul_mae_cycles", "rul_band_coverage", "failure_roc_auc", "anomaly_auroc"):
        assert isinstance(report["metrics"][key], float), key


def test_user_errors_are_cli_errors(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(CliError, match="no dataset"):
        _run(["train", "--dataset", str(tmp_path / "absent"), "--no-mlflow"])
    with pytest.raises(CliError, match="required"):
        _run(["evaluate"])
    with pytest.raises(CliError, match="evtwin train"):
        _run(["evaluate", "--dataset", str(dataset), "--models", str(tmp_path)])
    with pytest.raises(CliError, match="EVTWIN_TRAIN_SEED"):
        _run(["train"], {"EVTWIN_TRAIN_SEED": "x"})


def test_evaluate_plots_without_matplotlib_is_one_clear_error(tmp_path: Path, dataset: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(CliError, match="writing plots needs matplotlib.*pip install matplotlib"):
        _run(["evaluate", "--dataset", str(dataset), "--models", str(tmp_path), "--plots", str(tmp_path / "p")])
    assert not (tmp_path / "p").exists()  # refused before anything was scored or written
    with pytest.raises(CliError, match="--plots does not apply to --ceiling"):
        _run(["evaluate", "--dataset", str(dataset), "--ceiling"], {"EVTWIN_EVALUATE_PLOTS": str(tmp_path)})


def test_help_names_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "evaluate"):
        with pytest.raises(SystemExit):
            _run([command, "--help"])
    out = capsys.readouterr().out
    for var in ("EVTWIN_TRAIN_DATASET", "EVTWIN_TRAIN_OUT", "EVTWIN_TRAIN_QUICK", "EVTWIN_TRAIN_BATTERIES",
                "EVTWIN_TRAIN_SEED", "EVTWIN_TRAIN_NO_MLFLOW", "EVTWIN_TRAIN_QUIET",
                "EVTWIN_MLFLOW_TRACKING_URI", "EVTWIN_EVALUATE_DATASET", "EVTWIN_EVALUATE_JSON",
                "EVTWIN_EVALUATE_PLOTS"):
        assert var in out.replace("\n", " ").replace("  ", " ") or var in out, var


def test_evaluate_ceiling_reports_what_the_data_allows(dataset: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The command and its report are under test, not the figures: the ceiling's 300 deep trees on
    # 2 threads (4 fits) took 55 s alone and 300 s on a busy machine; 60 shallower rounds on one
    # thread keep the unit tests under a minute and every relation below still holds.
    monkeypatch.setattr("training.ceiling.CEILING_HP", HyperParams(rul_trees=60, rul_depth=6, nthread=1))
    assert _run(["evaluate", "--dataset", str(dataset), "--ceiling", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    for key in ("rul_r2_model", "rul_r2_history", "rul_r2_true_soh", "rul_r2_true_soh_history",
                "rul_r2_true_soh_future_usage"):
        assert -1.0 < metrics[key] <= 1.0, key
    # the oracles know more than any model input: they do at least as well (small data: some slack)
    assert metrics["rul_r2_true_soh_future_usage"] > metrics["rul_r2_model"] - 0.02
    assert 0.0 < metrics["fault_readings_traceless_fraction"] < 1.0
    assert 0.5 < metrics["anomaly_auroc_ceiling"] < 1.0
    assert 0.0 <= metrics["failure_positives_traceless_fraction"] < 1.0
    assert 0.0 < metrics["fault_packs_detectable_ceiling"] <= 1.0
    assert 0.0 <= metrics["fault_packs_read_within_7d"] <= 1.0
    assert 0.0 <= metrics["failure_positives_past_repair_fraction"] < 1.0
    assert metrics["fault_first_reading_delay_days_median"] >= 0.0
    assert metrics["thermal_z_healthy_pack_max_p99"] > 0.0 and metrics["spread_z_healthy_pack_max_p99"] > 0.0
    assert any(key.startswith("thermal_z_first_week_median_") for key in metrics)


def test_the_ceiling_across_seeds_fits_on_one_fleet_and_scores_all_of_another(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from training import data

    monkeypatch.setattr("training.ceiling.CEILING_HP", HyperParams(rul_trees=60, rul_depth=6, nthread=1))
    other = tmp_path / "ev_fleet.parquet"
    data.generate(16, seed=4, quick=True).frame.to_parquet(other, index=False)
    assert _run(["evaluate", "--dataset", str(other), "--ceiling", "--train-dataset", str(dataset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train_dataset"] == str(dataset) and report["test_batteries"] == 16
    metrics = report["metrics"]
    assert len([key for key in metrics if key.startswith("rul_r2_")]) == 5
    assert set(metrics) >= {"rul_r2_model", "rul_r2_true_soh_history", "fault_packs_detectable_ceiling"}
    # fitted on the first fleet, every variant predicts the other fleet better than its own mean RUL
    assert all(0.0 < metrics[key] <= 1.0 for key in metrics if key.startswith("rul_r2_")), metrics

    # --train-dataset belongs to the ceiling: a clear error without it
    with pytest.raises(CliError, match="--train-dataset applies to --ceiling only"):
        _run(["evaluate", "--dataset", str(other), "--train-dataset", str(dataset)])


def test_a_failed_loop_that_never_ran_warm_is_counted_as_undetectable() -> None:
    from training.ceiling import detectable_fault_packs

    frame = pd.DataFrame({
        "battery_id": ["COOL_COLD"] * 2 + ["COOL_WARM"] * 2 + ["SHORT"] * 2 + ["DROP", "OK"],
        "fault": ["cooling_failure"] * 4 + ["internal_short"] * 2 + ["sensor_dropout", "none"],
        "Battery_Temperature": [24.0, 29.5, 28.0, 33.0, 25.0, 26.0, 40.0, 41.0],
    })
    # the cold pack's loop failure leaves no trace; the dropout pack is not counted at all
    assert detectable_fault_packs(frame) == pytest.approx(2 / 3)


def _pack_rows(battery: str, fault: str, onset_day: float, days: list[float], temperature: list[float],
               spread_mv: float = 5.0) -> pd.DataFrame:
    """A pack's rows as the generator writes them: the fault and its onset on the active rows only."""
    start = pd.Timestamp("2024-01-01", tz="UTC")
    active = [fault != "none" and d >= onset_day for d in days]
    return pd.DataFrame({
        "battery_id": battery, "fault": [fault if a else "none" for a in active], "Service_Days": days,
        "Timestamp": [start + pd.Timedelta(days=d) for d in days],
        "fault_onset": [start + pd.Timedelta(days=onset_day) if a else pd.NaT for a in active],
        "temperature": temperature, "ambient_temperature": 20.0, "overpotential": 0.0, "current": 0.0,
        "cell_voltage_spread": spread_mv,
    })


def test_the_delay_floor_counts_days_to_the_first_reading_after_onset() -> None:
    from training.ceiling import EARLY_DAYS, first_readings

    frame = pd.concat([
        _pack_rows("SEEN_SOON", "sensor_drift", 10.0, [0.0, 9.0, 13.0, 40.0], [21.0] * 4),
        _pack_rows("SEEN_LATE", "weak_cell", 10.0, [0.0, 5.0, 30.0], [21.0] * 3),
        # its fault began after its last reading: the dataset never marks it, a healthy pack here
        _pack_rows("NEVER_AFTER", "internal_short", 50.0, [0.0, 20.0], [21.0] * 2),
        _pack_rows("DROPOUT", "sensor_dropout", 1.0, [0.0, 2.0], [21.0] * 2),  # silent: not counted
        _pack_rows("HEALTHY", "none", 0.0, [0.0, 1.0], [21.0] * 2),
    ], ignore_index=True)
    first = first_readings(frame)
    assert sorted(first.index) == ["SEEN_LATE", "SEEN_SOON"]
    assert first["SEEN_SOON"] == pytest.approx(3.0) and first["SEEN_LATE"] == pytest.approx(20.0)
    assert (first <= EARLY_DAYS).mean() == pytest.approx(1 / 2)


def test_a_pack_change_is_scored_against_the_packs_own_normal_and_causally() -> None:
    from models.features import FEATURE_NAMES
    from training.ceiling import pack_change_z

    days = [float(d) for d in range(0, 40, 2)]
    # a pack that runs 3 K warm all its life, then 8 K more from day 30 on (a drifting sensor)
    temps = [23.0 + (0.5 if k % 2 else -0.5) + (8.0 if d >= 30 else 0.0) for k, d in enumerate(days)]
    frame = _pack_rows("P", "sensor_drift", 30.0, days, temps)
    X = np.full((len(frame), len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    for name in ("temperature", "ambient_temperature", "overpotential", "current", "cell_voltage_spread"):
        X[:, FEATURE_NAMES.index(name)] = frame[name].to_numpy()
    z = pack_change_z(X, frame).set_index("day")
    assert z["thermal_z"].iloc[:3].isna().all()  # the baseline needs its days first
    assert z.loc[:28.0, "thermal_z"].iloc[3:].abs().max() < 1.0  # warm, but its own normal: no change
    assert z.loc[30.0, "thermal_z"] > 4.0  # the step, against the days before it only
    assert z["spread_z"].iloc[3:].abs().max() < 1e-9  # a steady spread does not move
