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
``failure_positives_past_repair_fraction`` the share of them more than ``repair_after_days`` after
their pack's fault began — rows a fleet, which replaces such a pack, never has
(``training.data.fleet_weights``); ``fault_packs_detectable_ceiling`` is the share of the packs with a fault other than the dropout
(the packs ``fault_packs_detected`` counts) that have any fault reading with a trace at all — a
pack whose loop failed but which never rose above the set point afterwards is, to every
observable, a healthy pack, so no detector can flag more packs than this without false alarms.

For the detection delay (bar: a median of at most :data:`EARLY_DAYS` days after onset) it reports
what the sampling and the faults' early traces allow, per pack with a fault other than the dropout:

- ``fault_first_reading_delay_days_median``: days from the onset to the pack's first reading after
  it (no detector flags a pack before it reports); ``fault_packs_read_within_7d``: the share of
  such packs with any reading within :data:`EARLY_DAYS` days of the onset. A median delay within
  7 days needs half of the flagged packs flagged by then, so nearly every pack in this share must
  be flagged at its first readings;
- the faults' first-week trace against the pack's own normal (:func:`pack_change_z`: each service
  day's mean thermal residual and cell-voltage spread as a z-score against the pack's moving
  baseline and spread): ``thermal_z_first_week_median_<fault>`` and
  ``spread_z_first_week_median_<fault>`` over the fault's days within :data:`EARLY_DAYS` days of
  onset, beside ``thermal_z_healthy_pack_max_p99`` and ``spread_z_healthy_pack_max_p99``, the 99th
  percentile over healthy packs of the highest z each reaches in its life: a per-pack change
  detector that flags at most 1 % of healthy packs cannot flag below that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import state as st
from models.features import FEATURE_NAMES
from models.physics.params import ThermalParams
from training.data import TrainingData, days_after_onset, fleet_weights, load, split_rows
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
    metrics["failure_positives_past_repair_fraction"] = float((fleet_weights(frame) == 0)[positive].mean())
    metrics["fault_packs_detectable_ceiling"] = detectable_fault_packs(frame)
    metrics.update(early_detection(data.X, frame))
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


EARLY_DAYS = 7.0
"""The delay bar: days after a fault's onset."""
CHANGE_TAU_D = st.TAU_SLOW_D
"""Time constant of the pack's own baseline in :func:`pack_change_z` (days, the twin's slow one)."""
CHANGE_SIGNALS: dict[str, tuple[float, float]] = {"thermal": (2.0, 1.0), "spread": (1.5, 0.5)}
"""Per signal of :func:`pack_change_z`: the prior and the smallest standard deviation of a pack's
daily mean (K for the thermal residual, mV for the cell-voltage spread; healthy packs of the
400-pack fleet, seed 0, vary 2.1 K and 1.3 mV from day to day around their own mean)."""
CHANGE_WARM_DAYS = 3
"""Days of a pack's baseline before its z-scores count."""


def _visible_kind(frame: pd.DataFrame) -> pd.Series:
    """Fault of every pack (``"none"`` for healthy packs), by battery id."""
    fault = pd.Series(frame["fault"].to_numpy(dtype=object), index=frame["battery_id"].to_numpy())
    return fault.groupby(level=0).agg(lambda s: next((f for f in s if f != "none"), "none"))


def first_readings(frame: pd.DataFrame) -> pd.Series:
    """Days from the onset to the first reading after it, per pack with a fault other than the
    silent ones (``training.data.SILENT_FAULTS``). The dataset marks a fault on its active rows
    only, so a pack that never reported after its onset is a healthy pack here, as it is to
    ``fault_packs_detected``; inf only for a fault row without an onset time."""
    from training.data import SILENT_FAULTS

    kind = _visible_kind(frame)
    packs = kind[(kind != "none") & ~kind.isin(SILENT_FAULTS)].index
    after = pd.Series(days_after_onset(frame), index=frame["battery_id"].to_numpy())
    first = after[after >= 0.0].groupby(level=0).min()
    return first.reindex(packs).fillna(np.inf)


def pack_change_z(X: np.ndarray, frame: pd.DataFrame) -> pd.DataFrame:
    """Each pack's service days with the day's mean thermal residual and cell-voltage spread as
    z-scores against the pack's own normal (columns ``battery_id``, ``day``, ``thermal_z``,
    ``spread_z``, ``after_onset`` in days).

    The thermal residual is the twin's (``models.state``): ``temperature - min(ambient, T_set) -
    k * heat``. The normal is a moving average of the pack's earlier days with the twin's slow time
    constant (:data:`CHANGE_TAU_D`) and a moving variance around it (from the prior of
    :data:`CHANGE_SIGNALS`); a day's z compares it with the days before it only (causal), from
    the pack's fourth day of readings on (NaN before).
    """
    col = {name: X[:, FEATURE_NAMES.index(name)].astype(np.float64)
           for name in ("temperature", "ambient_temperature", "overpotential", "current", "cell_voltage_spread")}
    heat = col["overpotential"] * col["current"]
    thermal = (col["temperature"] - np.fmin(col["ambient_temperature"], st.T_SET_C)  # no ambient: T_set
               - np.where(heat > 0.0, st.HOTSPOT_K_PER_W * heat, 0.0))
    rows = pd.DataFrame({"battery_id": frame["battery_id"].to_numpy(),
                         "day": np.floor(frame["Service_Days"].to_numpy(dtype=np.float64)),
                         "thermal": thermal, "spread": col["cell_voltage_spread"],
                         "after_onset": days_after_onset(frame)})
    days = rows.groupby(["battery_id", "day"], sort=False).mean().reset_index()
    for signal, (sd0, sd_min) in CHANGE_SIGNALS.items():
        z = np.full(len(days), np.nan)
        for index in days.groupby("battery_id", sort=False).indices.values():
            z[index] = _z_against_own_normal(days[signal].to_numpy()[index], days["day"].to_numpy()[index],
                                             sd0, sd_min)
        days[f"{signal}_z"] = z
    return days[["battery_id", "day", "thermal_z", "spread_z", "after_onset"]]


def _z_against_own_normal(x: np.ndarray, day: np.ndarray, sd0: float, sd_min: float) -> np.ndarray:
    out = np.full(len(x), np.nan)
    mean, var, taken, last_day = np.nan, sd0 * sd0, 0, np.nan
    for i in range(len(x)):
        if x[i] != x[i]:  # no reading of this signal that day: the baseline waits
            continue
        if taken >= CHANGE_WARM_DAYS:
            out[i] = (x[i] - mean) / max(np.sqrt(var), sd_min)
        if taken == 0:
            mean = x[i]
        else:
            alpha = 1.0 - np.exp(-max(day[i] - last_day, 0.0) / CHANGE_TAU_D)
            dev = x[i] - mean
            mean += alpha * dev
            var = (1.0 - alpha) * (var + alpha * dev * dev)
        taken, last_day = taken + 1, day[i]
    return out


def early_detection(X: np.ndarray, frame: pd.DataFrame) -> dict[str, float]:
    """The delay figures of the module docstring."""
    first = first_readings(frame)
    out = {"fault_first_reading_delay_days_median": float(first.median()) if len(first) else float("nan"),
           "fault_packs_read_within_7d": float((first <= EARLY_DAYS).mean()) if len(first) else float("nan")}
    days = pack_change_z(X, frame)
    kind = _visible_kind(frame)
    healthy = days[days["battery_id"].isin(kind[kind == "none"].index)]
    early = days[days["after_onset"].between(0.0, EARLY_DAYS)]
    early_kind = kind.reindex(early["battery_id"]).to_numpy()
    for signal in CHANGE_SIGNALS:
        peak = healthy.groupby("battery_id")[f"{signal}_z"].max().dropna()
        out[f"{signal}_z_healthy_pack_max_p99"] = float(np.quantile(peak, 0.99)) if len(peak) else float("nan")
        for fault in first.index.map(kind).unique():
            z = early.loc[early_kind == fault, f"{signal}_z"].dropna()
            out[f"{signal}_z_first_week_median_{fault}"] = float(z.median()) if len(z) else float("nan")
    return out


def _fault_ahead(frame: pd.DataFrame) -> np.ndarray:
    """Readings of a battery whose fault has not started yet (its later rows carry one)."""
    fault = frame["fault"].to_numpy(dtype=object) != "none"
    later = pd.Series(fault[::-1]).groupby(frame["battery_id"].to_numpy()[::-1]).cummax().to_numpy()[::-1]
    return np.asarray(later, dtype=bool) & ~fault


__all__ = ["CEILING_HP", "ceiling_report", "detectable_fault_packs", "early_detection",
           "first_readings", "future_cycles_per_day", "history_features", "pack_change_z", "rul_inputs",
           "traceless"]
