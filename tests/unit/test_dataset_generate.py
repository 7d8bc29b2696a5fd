"""Dataset generator: columns, labels, ordering, determinism, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datasets.generate as gen
from datasets import DatasetError
from datasets.loader import load_dataset
from models.physics.history import HistoryConfig

FAST = HistoryConfig(day_dt_s=1800.0, samples_per_day=3, loss_per_iteration=0.01,
                     max_interval_days=30)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return gen.build_frame(12, seed=11, progress=False, cfg=FAST)


def test_columns_and_types(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == gen.COLUMNS
    assert str(frame["Timestamp"].dt.tz) == "UTC"
    assert frame["failure_within_horizon"].dtype == bool
    assert set(frame["Mode"]) <= {"PARKED", "DRIVING", "CHARGING_AC", "CHARGING_DC"}
    assert frame["SoC"].between(0, 100).all() and frame["SoH"].between(0, 100).all()
    assert frame["Service_Days"].dtype == np.float64 and frame["Service_Days"].notna().all()


def test_each_battery_runs_new_to_end_of_life_time_ordered(frame: pd.DataFrame) -> None:
    assert frame["battery_id"].nunique() == 12
    for _, g in frame.groupby("battery_id"):
        assert g["Timestamp"].is_monotonic_increasing and g["Timestamp"].is_unique
        assert g["true_soh"].iloc[0] > 99.0 and g["true_soh"].iloc[-1] < 82.0
        assert (g["true_soh"] >= 80.0).all()
        assert np.all(np.diff(g["RUL"].to_numpy()) <= 1e-9)
        assert g["failure_within_horizon"].iloc[-1]
        days = g["Service_Days"].to_numpy()  # the pack's age: from 0, never down, in step with time
        assert days[0] == 0.0 and np.all(np.diff(days) >= 0)
        elapsed = (g["Timestamp"] - pd.Timestamp("2020-01-01", tz="UTC")).dt.total_seconds() / 86400
        assert np.all((elapsed - days >= 0) & (elapsed - days <= 1.0))


def test_labels_are_consistent(frame: pd.DataFrame) -> None:
    active = frame["fault"] != "none"
    assert frame.loc[active, "fault_onset"].notna().all()
    assert frame.loc[~active, "fault_onset"].isna().all()
    assert (frame.loc[active, "fault_onset"] <= frame.loc[active, "Timestamp"]).all()
    assert frame.loc[active, "failure_within_horizon"].all()
    assert (frame["RUL"] >= 0).all()
    assert (frame["SoH"] - frame["true_soh"]).abs().mean() < 3.0
    assert not np.allclose(frame["SoH"], frame["true_soh"])


def test_same_seed_identical_files_and_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gen, "DEFAULT_CONFIG", FAST)
    a = gen.generate_dataset(5, 3, tmp_path / "a", formats=("parquet", "csv"), progress=False)
    b = gen.generate_dataset(5, 3, tmp_path / "b", formats=("parquet", "csv"), progress=False)
    c = gen.generate_dataset(5, 4, tmp_path / "c", progress=False)
    ma, mb, mc = (json.loads((p.parent / "manifest.json").read_text()) for p in (a, b, c))
    assert ma["files"] == mb["files"] and ma["rows"] == mb["rows"] > 0
    assert ma["files"]["ev_fleet.parquet"] != mc["files"]["ev_fleet.parquet"]
    assert ma["seed"] == 3 and ma["n_batteries"] == 5 and ma["generator_version"]
    pd.testing.assert_frame_equal(load_dataset(a), load_dataset(b))
    from_csv = load_dataset(a.parent / "ev_fleet.csv")
    np.testing.assert_allclose(from_csv["SoC"], load_dataset(a)["SoC"])
    assert (from_csv["Timestamp"] == load_dataset(a)["Timestamp"]).all()


def test_bad_format_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        gen.generate_dataset(2, 0, tmp_path, formats=("xlsx",), progress=False)
