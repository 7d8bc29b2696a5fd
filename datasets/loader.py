"""Load the synthetic fleet dataset and the Kaggle EVIoT-PredictiveMaint CSV.

The Kaggle file (``EV_Predictive_Maintenance_Dataset_15min.csv``, "EVIoT-PredictiveMaint") is licensed
CC BY-NC-SA 4.0 (non-commercial): the project cannot download or redistribute it. Put it by hand at
``data/kaggle/EV_Predictive_Maintenance_Dataset_15min.csv`` (or pass its path).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from datasets.errors import DatasetError, DatasetNotFoundError
from datasets.generate import FILE_STEM

DEFAULT_DIR = Path("data") / "ev_fleet"
"""Default directory of the generated dataset (relative to the working directory)."""
KAGGLE_FILENAME = "EV_Predictive_Maintenance_Dataset_15min.csv"
KAGGLE_DEFAULT = Path("data") / "kaggle" / KAGGLE_FILENAME
SHARED_COLUMNS: tuple[str, ...] = (
    "Timestamp", "SoC", "SoH", "Battery_Voltage", "Battery_Current", "Battery_Temperature",
    "Charge_Cycles", "Power_Consumption", "Ambient_Temperature",
)
"""Columns whose meaning the Kaggle file and ours share (same names)."""
KAGGLE_RENAMES = {"RUL": "kaggle_RUL", "Failure_Probability": "kaggle_Failure_Probability"}
"""Kaggle columns whose meaning differs from ours (our RUL is in EFC), renamed to avoid confusion."""


def load_dataset(path: Path | None = None) -> pd.DataFrame:
    """Read the generated dataset (parquet preferred, else csv).

    Args:
        path: A data file, or a directory holding ``ev_fleet.parquet`` / ``ev_fleet.csv``
            (default ``data/ev_fleet``).

    Returns:
        The frame, ``Timestamp`` (and ``fault_onset``) as UTC datetimes, rows time-ordered per battery.

    Raises:
        DatasetNotFoundError: If no data file is there.
    """
    path = Path(path) if path is not None else DEFAULT_DIR
    if path.is_dir():
        candidates = [path / f"{FILE_STEM}.parquet", path / f"{FILE_STEM}.csv"]
        path = next((c for c in candidates if c.exists()), candidates[0])
    if not path.exists():
        directory = path if path.suffix == "" else path.parent
        raise DatasetNotFoundError(
            f"no dataset at {path}; generate one with `python -m datasets.generate --out {directory}`")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    frame = pd.read_csv(path)
    for col in ("Timestamp", "fault_onset"):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame


def _header_line(path: Path) -> int:
    """Index of the header line (the first line naming Timestamp and SoC), skipping title rows."""
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        for k, line in enumerate(fh):
            cells = [c.strip().strip('"') for c in line.split(",")]
            if "Timestamp" in cells and "SoC" in cells:
                return k
            if k > 50:
                break
    raise DatasetError(f"{path}: no header line with Timestamp and SoC in the first 50 lines")


def load_kaggle(path: Path | None = None) -> pd.DataFrame:
    """Read the Kaggle EVIoT-PredictiveMaint CSV and map it to our column names.

    Shared columns keep their names; ``RUL`` and ``Failure_Probability`` become ``kaggle_RUL`` and
    ``kaggle_Failure_Probability`` (other meaning and unit than ours); the other Kaggle columns are
    kept as they are. SoC and SoH given as fractions (max <= 1) are converted to %. A ``battery_id``
    column (``KAGGLE_0001``, the file is one vehicle) is added, and ``Service_Days`` (the pack's age)
    is added as NaN unless the file has it: Kaggle does not report it.

    Args:
        path: The CSV file or its directory (default ``data/kaggle/``).

    Raises:
        DatasetNotFoundError: If the file is absent (with where to put it and the licence).
        DatasetError: If the file has no recognisable header.
    """
    path = Path(path) if path is not None else KAGGLE_DEFAULT
    if path.is_dir():
        path = path / KAGGLE_FILENAME
    if not path.exists():
        raise DatasetNotFoundError(
            f"Kaggle file not found at {path}. Download '{KAGGLE_FILENAME}' (EVIoT-PredictiveMaint) "
            f"from Kaggle yourself and put it at {KAGGLE_DEFAULT}: it is licensed CC BY-NC-SA 4.0 "
            "(non-commercial), so the project cannot download or redistribute it.")
    frame = pd.read_csv(path, skiprows=_header_line(path))
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in SHARED_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing Kaggle columns {missing}")
    frame = frame.rename(columns=KAGGLE_RENAMES)
    frame["Timestamp"] = pd.to_datetime(frame["Timestamp"], utc=True)
    for col in ("SoC", "SoH"):
        if frame[col].max() <= 1.0:
            frame[col] = frame[col] * 100.0
    frame.insert(1, "battery_id", "KAGGLE_0001")
    if "Service_Days" not in frame.columns:
        frame["Service_Days"] = float("nan")
    return frame
