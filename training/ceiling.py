"""What the generated data allows: how far the issue's quality bars are reachable at all.

``evtwin evaluate --ceiling --dataset PATH`` fits the RUL model (same battery-level split as
``evtwin train``, with more capacity than the shipped model: :data:`CEILING_HP`) on several inputs
and reports the held-out R² of each:

- ``rul_r2_model``: the features the live scorer computes (``models.features``);
- ``rul_r2_history``: plus what a stream could keep per battery, causally (running means of the
  stress: temperature, abs C-rate, SoC, DC-charging share; least-squares slope of SoH over EFC);
- ``rul_r2_true_soh`` (oracle): the simulator's true SoH in place of the BMS estimate;
- ``rul_r2_true_soh_history`` (oracle): that, plus the same causal history computed on the true
  SoH — the best a twin could do if its BMS told the truth;
- ``rul_r2_true_soh_future_usage`` (oracle): the true SoH plus the battery's *future* EFC per day.

The oracles are not available to any model; they bound what better features could give.

With ``--train-dataset TRAIN`` the split is the quality bar's: the models are fitted on TRAIN's
training and calibration batteries (all but the batteries ``evtwin train`` holds out for its test)
and scored on every battery of the dataset, a fleet of another seed; without it, on the dataset's
own battery-level split.

For the fault detector it reports which fault readings carry no trace a single reading could show:
a link dropout (the fault removes readings, it does not alter them) and a failed cooling loop in a
pack at or below the cooling set point (a healthy loop is off there too). ``anomaly_auroc_ceiling``
is the AUROC of an oracle that ranks every other fault reading above every healthy one and ties
these with healthy readings; ``failure_positives_traceless_fraction`` is the share of the failure
label's positives that are such readings or a fault that has not started yet;
``fault_packs_detectable_ceiling`` is the share of the packs with a fault other than the dropout
(the packs ``fault_packs_detected`` counts) that have any fault reading with a trace at all — a
pack whose loop failed but which never rose above the set point afterwards is, to every
observable, a healthy pack, so no detector can flag more packs than this without false alarms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.features import FEATURE_NAMES
from models.physics.params import ThermalParams
from training.data import TrainingData, load, split_rows
from training.fit import HyperParams, fit_rul, predict_rul

SOH = FEATURE_NAMES.index("soh")
CEILING_HP = HyperParams(rul_trees=300, rul_depth=8, rul_learning_rate=0.1, nthread=2)
"""RUL model of the ceiling runs: the seed's depth 8, 300 rounds (the shipped model is smaller for
scoring speed; with it every figure is lower, e.g. true SoH 0.85 instead of 0.90)."""
HISTORY_INPUTS = ("temperature", "c_rate", "soc", "mode_charging_dc")


def history_features(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Causal per-battery history (rows time-ordered within each battery, as the dataset is):
    running means of the stress inputs and the running least-squares slope of SoH over EFC."""
    frame = pd.DataFrame({name: X[:, FEATURE_NAMES.index(name)] for name in HISTORY_INPUTS})
    frame["c_rate"] = frame["c_rate"].abs()
    efc = X[:, FEATURE_NAMES.index("charge_cycles")].astype(np.float64)
    soh = X[:, SOH].astype(np.float64)
    frame = frame.assign(g=groups, x=efc, y=soh, xx=efc * efc, xy=efc * soh, n=1.0)
    sums = frame.groupby("g", sort=False).cumsum()
    out = [sums[name] / sums["n"] for name in HISTORY_INPUTS]
    with np.errstate(divide="ignore", invalid="ignore"):
        den = sums["n"] * sums["xx"] - sums["x"] ** 2
        slope = np.where(den > 0, (sums["n"] * sums["xy"] - sums["x"] * sums["y"]) / den, np.nan)
    return np.column_stack([*(np.asarray(c, dtype=np.float64) for c in out), slope]).astype(np.float32)


def future_cycles_per_day(frame: pd.DataFrame, rul: np.ndarray) -> np.ndarray:
    """Oracle: the battery's EFC per day from each reading to its end of life."""
    g = frame.groupby("battery_id", sort=False)
    last_day = g["Service_Days"].transform("max").to_numpy(dtype=np.float64)
    days_left = np.maximum(last_day - frame["Service_Days"].to_numpy(dtype=np.float64), 1.0)
    return (rul / days_left).astype(np.float32)


def rul_inputs(data: TrainingData) -> dict[str, np.ndarray]:
    """The input matrices of the RUL variants (see the module docstring), one row per reading."""
    X, frame = data.X, data.frame
    true_soh = X.copy()
    true_soh[:, SOH] = frame["true_soh"].to_numpy(dtype=np.float32)
    return {
        "rul_r2_model": X,
        "rul_r2_history": np.column_stack([X, history_features(X, data.groups)]),
        "rul_r2_true_soh": true_soh,
        "rul_r2_true_soh_history": np.column_stack([true_soh, history_features(true_soh, data.groups)]),
        "rul_r2_true_soh_future_usage": np.column_stack([true_soh, future_cycles_per_day(frame, data.rul)]),
    }


def _r2(fit_X: np.ndarray, fit_rul_: np.ndarray, test_X: np.ndarray, test_rul: np.ndarray,
        hp: HyperParams) -> float:
    from sklearn.metrics import r2_score

    model = fit_rul(fit_X, fit_rul_, hp)
    return float(r2_score(test_rul, predict_rul(model, test_X, hp.rul_log)[:, 1]))


def _generated(path: Path) -> TrainingData:
    from training.errors import TrainingDataError

    data = load(path)
    if data.kind != "ev_fleet":
        raise TrainingDataError(f"{path}: the ceiling needs the generated dataset's ground truth (true SoH, faults)")
    return data


def traceless(frame: pd.DataFrame) -> np.ndarray:
    """Fault readings a single reading cannot show (see the module docstring)."""
    fault = frame["fault"].to_numpy(dtype=object)
    cool_off = frame["Battery_Temperature"].to_numpy(dtype=np.float64) <= ThermalParams().t_cooling_on_c
    return (fault == "sensor_dropout") | ((fault == "cooling_failure") & cool_off)


def ceiling_report(dataset: Path, hp: HyperParams | None = None, seed: int = 0,
                   train_dataset: Path | None = None) -> dict[str, Any]:
    """Fit and score the variants on ``dataset`` (a generated ``ev_fleet`` dataset); with
    ``train_dataset``, fit on that dataset's training batteries and score all of ``dataset``."""
    hp = hp or CEILING_HP
    data = _generated(dataset)
    frame = data.frame
    inputs = rul_inputs(data)
    if train_dataset is None:
        split = split_rows(data.groups, seed=seed, strata=data.anomaly)
        train, test = np.concatenate([split.train, split.calib]), split.test
        metrics = {key: _r2(X[train], data.rul[train], X[test], data.rul[test], hp) for key, X in inputs.items()}
    else:
        fit_data = _generated(train_dataset)
        split = split_rows(fit_data.groups, seed=seed, strata=fit_data.anomaly)
        train, test = np.concatenate([split.train, split.calib]), np.arange(len(frame))
        metrics = {key: _r2(X[train], fit_data.rul[train], inputs[key], data.rul, hp)
                   for key, X in rul_inputs(fit_data).items()}
    fault = frame["fault"].to_numpy(dtype=object) != "none"
    hidden = traceless(frame)
    metrics["fault_readings_traceless_fraction"] = float(hidden[fault].mean())
    metrics["anomaly_auroc_ceiling"] = float(1.0 - 0.5 * hidden[fault].mean())
    positive = data.failure.astype(bool)
    not_started = positive & ~fault & _fault_ahead(frame)
    metrics["failure_positives_traceless_fraction"] = float((hidden | not_started)[positive].mean())
    metrics["fault_packs_detectable_ceiling"] = detectable_fault_packs(frame)
    return {"dataset": str(dataset), "train_dataset": str(train_dataset) if train_dataset else None,
            "rows": int(len(frame)), "test_batteries": int(len(np.unique(data.groups[test]))), "metrics": metrics}


def detectable_fault_packs(frame: pd.DataFrame) -> float:
    """Share of the packs with a fault other than the silent ones (``training.data.SILENT_FAULTS``)
    that have at least one fault reading not :func:`traceless` (NaN without such packs)."""
    from training.data import SILENT_FAULTS

    fault = frame["fault"].to_numpy(dtype=object)
    visible = (fault != "none") & ~np.isin(fault, SILENT_FAULTS)
    if not visible.any():
        return float("nan")
    seen = (~traceless(frame))[visible]
    return float(pd.Series(seen).groupby(frame["battery_id"].to_numpy()[visible]).any().mean())


def _fault_ahead(frame: pd.DataFrame) -> np.ndarray:
    """Readings of a battery whose fault has not started yet (its later rows carry one)."""
    fault = frame["fault"].to_numpy(dtype=object) != "none"
    later = pd.Series(fault[::-1]).groupby(frame["battery_id"].to_numpy()[::-1]).cummax().to_numpy()[::-1]
    return np.asarray(later, dtype=bool) & ~fault


__all__ = ["CEILING_HP", "ceiling_report", "detectable_fault_packs", "future_cycles_per_day", "history_features",
           "rul_inputs", "traceless"]
