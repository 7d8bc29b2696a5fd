"""Loaders: the generated dataset's absence and the Kaggle EVIoT CSV (synthetic stand-in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets import DatasetError, DatasetNotFoundError
from datasets.loader import KAGGLE_FILENAME, load_dataset, load_kaggle

KAGGLE_COLUMNS = (
    "Timestamp,SoC,SoH,Battery_Voltage,Battery_Current,Battery_Temperature,Charge_Cycles,"
    "Motor_Temperature,Motor_Vibration,Motor_Torque,Motor_RPM,Power_Consumption,Brake_Pad_Wear,"
    "Brake_Pressure,Reg_Brake_Efficiency,Tire_Pressure,Tire_Temperature,Suspension_Load,"
    "Ambient_Temperature,Ambient_Humidity,Load_Weight,Driving_Speed,Distance_Traveled,Idle_Time,"
    "Route_Roughness,RUL,Failure_Probability,Maintenance_Type,TTF,Component_Health_Score"
)


def _write_kaggle(path: Path, rows: int = 5) -> Path:
    lines = ["EV Predictive Maintenance Dataset (15-minute intervals),,,", KAGGLE_COLUMNS]
    for k in range(rows):
        values = [f"2020-01-01 00:{15 * (k % 4):02d}:00", f"{0.9 - 0.01 * k}", "0.97", "370.1",
                  "-12.5", "28.0", f"{100 + k}"] + ["1.0"] * 23
        lines.append(",".join(values))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kaggle_title_row_is_skipped_and_columns_mapped(tmp_path: Path) -> None:
    frame = load_kaggle(_write_kaggle(tmp_path / KAGGLE_FILENAME))
    assert len(frame) == 5
    assert frame["SoC"].iloc[0] == pytest.approx(90.0) and frame["SoH"].iloc[0] == pytest.approx(97.0)
    assert frame["Battery_Voltage"].iloc[0] == pytest.approx(370.1)
    assert "kaggle_RUL" in frame and "RUL" not in frame and "Motor_RPM" in frame
    assert str(frame["Timestamp"].dt.tz) == "UTC" and frame["battery_id"].iloc[0] == "KAGGLE_0001"
    assert len(frame.columns) == 32
    assert frame["Service_Days"].isna().all()  # Kaggle has no pack age


def test_kaggle_directory_argument(tmp_path: Path) -> None:
    _write_kaggle(tmp_path / KAGGLE_FILENAME, rows=2)
    assert len(load_kaggle(tmp_path)) == 2


def test_missing_kaggle_file_says_where_and_licence(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_kaggle(tmp_path / "nope.csv")
    msg = str(err.value)
    assert KAGGLE_FILENAME in msg and "CC BY-NC-SA" in msg and "non-commercial" in msg
    assert isinstance(err.value, DatasetError)


def test_file_without_header_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError):
        load_kaggle(bad)


def test_missing_generated_dataset_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        load_dataset(tmp_path)
