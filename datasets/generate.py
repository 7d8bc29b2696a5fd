"""Generate the synthetic run-to-failure EV fleet dataset (see ``datasets/README.md``, the card).

``python -m datasets.generate --n 500 --seed 0 --out data/ev_fleet [--csv]`` writes
``ev_fleet.parquet`` (and ``ev_fleet.csv``) plus ``manifest.json`` into the output directory.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from datasets.errors import DatasetError
from models.physics.faults import FAULT_NAMES
from models.physics.history import HistoryConfig, simulate_histories
from models.physics.params import FAILURE_HORIZON_DAYS
from models.physics.usage import MODE_NAMES, SECONDS_PER_DAY
from models.registry import sha256_file

if TYPE_CHECKING:
    from models.physics.fleet import Fleet

DEFAULT_CONFIG = HistoryConfig()
"""Multi-rate settings used by :func:`generate_dataset`."""
GENERATOR_VERSION = "1.1.0"  # 1.1: Service_Days column
FILE_STEM = "ev_fleet"
COLUMNS: tuple[str, ...] = (
    "Timestamp", "battery_id", "SoC", "SoH", "Battery_Voltage", "Battery_Current",
    "Battery_Temperature", "Charge_Cycles", "Power_Consumption", "Ambient_Temperature",
    "Cell_Voltage_Min", "Cell_Voltage_Max", "Service_Days", "Mode", "true_soh", "RUL", "failure_within_horizon",
    "fault", "fault_onset",
)
"""Columns of the dataset, in order (units in the card)."""
_READING_TO_COLUMN = {
    "soc": "SoC", "soh": "SoH", "voltage": "Battery_Voltage", "current": "Battery_Current",
    "temperature": "Battery_Temperature", "charge_cycles": "Charge_Cycles",
    "power_consumption": "Power_Consumption", "ambient_temperature": "Ambient_Temperature",
    "cell_voltage_min": "Cell_Voltage_Min", "cell_voltage_max": "Cell_Voltage_Max",
    "service_days": "Service_Days",
}


def _labels(rows: dict[str, np.ndarray], eol: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """RUL (EFC) and failure_within_horizon of every row, from the battery's interpolated EOL."""
    b = rows["battery"]
    rul = np.maximum(eol["eol_efc"][b] - rows["efc"], 0.0)
    days_left = eol["eol_day"][b] - rows["life_days"]
    onset = rows["fault_onset_days"]
    fault_soon = np.isfinite(onset)  # active fault
    return {"RUL": rul, "failure_within_horizon": (days_left <= FAILURE_HORIZON_DAYS) | fault_soon}


def _upcoming_fault(rows: dict[str, np.ndarray], code: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """True where the battery's planned fault starts within the horizon after the row."""
    b = rows["battery"]
    start = onset[b]
    return (code[b] > 0) & (start > rows["life_days"]) & (start <= rows["life_days"] + FAILURE_HORIZON_DAYS)


def build_frame(n_batteries: int, seed: int, progress: bool = True,
                cfg: HistoryConfig | None = None) -> pd.DataFrame:
    """Simulate the fleet and return the dataset as a DataFrame, time-ordered within each battery.

    Args:
        n_batteries: Number of batteries (each from new to SoH 80 %).
        seed: Seed (same seed, same frame).
        progress: Show a rich progress bar (batteries at end of life).
        cfg: Multi-rate settings (default :class:`HistoryConfig`).
    """
    cfg = cfg or HistoryConfig()
    rows, eol, fleet = _simulate(n_batteries, seed, progress, cfg)
    labels = _labels(rows, eol)
    labels["failure_within_horizon"] |= _upcoming_fault(rows, fleet.fault_code, fleet.fault_onset)
    width = max(4, len(str(n_batteries)))
    ids = np.array([f"BATTERY_{k:0{width}d}" for k in range(1, n_batteries + 1)])
    ts = pd.to_datetime(np.round(rows["timestamp_s"] * 1000).astype(np.int64), unit="ms", utc=True).as_unit("ms")
    onset_s = cfg.start_time_s + rows["fault_onset_days"] * SECONDS_PER_DAY
    data = {"Timestamp": ts, "battery_id": ids[rows["battery"]]}
    data.update({col: rows[key] for key, col in _READING_TO_COLUMN.items()})
    data.update({
        "Mode": np.array(MODE_NAMES)[rows["mode"]], "true_soh": rows["true_soh"],
        "RUL": labels["RUL"], "failure_within_horizon": labels["failure_within_horizon"],
        "fault": np.array(FAULT_NAMES)[rows["fault"]],
        "fault_onset": pd.to_datetime(onset_s * 1000, unit="ms", utc=True).as_unit("ms"),
    })
    frame = pd.DataFrame(data, columns=list(COLUMNS))
    order = np.lexsort((rows["timestamp_s"], rows["battery"]))
    return frame.iloc[order].reset_index(drop=True)


def _simulate(n: int, seed: int, progress: bool, cfg: HistoryConfig) -> tuple[
        dict[str, np.ndarray], dict[str, np.ndarray], Fleet]:
    """Run :func:`simulate_histories`, with a rich progress bar when asked."""
    if not progress:
        return simulate_histories(n, seed, cfg=cfg)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("batteries at end of life", total=n)
        return simulate_histories(n, seed, cfg=cfg,
                                  on_iteration=lambda done, _: bar.update(task, completed=done))


def generate_dataset(n_batteries: int, seed: int, out_dir: Path,
                     formats: tuple[str, ...] = ("parquet",), progress: bool = True) -> Path:
    """Write ``ev_fleet.parquet`` (and/or ``.csv``) and ``manifest.json`` into ``out_dir``.

    Args:
        n_batteries: Number of batteries (>= 1), each simulated from new to end of life.
        seed: Seed; the same seed gives byte-identical data files.
        out_dir: Output directory (created).
        formats: Any of "parquet", "csv".
        progress: Show a rich progress bar.

    Returns:
        Path of the first data file written.

    Raises:
        DatasetError: On an unknown format or n_batteries < 1.
    """
    bad = set(formats) - {"parquet", "csv"}
    if bad or not formats or n_batteries < 1:
        raise DatasetError(f"formats must be from ('parquet', 'csv') and n >= 1; got {formats}, {n_batteries}")
    start = time.perf_counter()
    frame = build_frame(n_batteries, seed, progress, DEFAULT_CONFIG)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{FILE_STEM}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        paths.append(path)
    manifest = {
        "generator": "datasets.generate", "generator_version": GENERATOR_VERSION, "seed": seed,
        "n_batteries": n_batteries, "rows": len(frame), "horizon_days": FAILURE_HORIZON_DAYS,
        "files": {p.name: sha256_file(p) for p in paths}, "columns": list(COLUMNS),
        "generation_seconds": round(time.perf_counter() - start, 2),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return paths[0]


def main() -> None:
    """Command line entry point (``python -m datasets.generate --help``)."""
    ap = argparse.ArgumentParser(description="Generate the synthetic EV fleet run-to-failure dataset.")
    ap.add_argument("--n", type=int, default=500, help="number of batteries (default 500)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--out", type=Path, default=Path("data/ev_fleet"), help="output directory")
    ap.add_argument("--csv", action="store_true", help="also write ev_fleet.csv")
    args = ap.parse_args()
    formats = ("parquet", "csv") if args.csv else ("parquet",)
    path = generate_dataset(args.n, args.seed, args.out, formats)
    print(f"wrote {path} and {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
