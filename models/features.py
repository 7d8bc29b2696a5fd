"""The one feature module: model inputs for training (data frames) and live scoring (records).

The first 24 features come from **one reading**; the rest (from ``soh_filtered`` on) from the
battery's **state** (``models.state``: what the twin remembers of the pack, defined in battery time
so that the sparse dataset and the dense live stream give the same values). Training replays each
battery's rows causally through ``models.state.update`` (:func:`replay`); the score worker runs the
same function on its partition state and passes the state after each reading (``states=``).

Features (``FEATURE_NAMES``, in order; NaN where an input is missing, which XGBoost handles):

====================  ======  ==========================================================================
name                  unit    meaning
====================  ======  ==========================================================================
soc                   %       BMS state of charge
soh                   %       BMS-estimated state of health
voltage               V       pack terminal voltage
current               A       pack current, > 0 discharge
temperature           °C      hottest pack sensor
charge_cycles         EFC     equivalent full cycles so far
power_consumption     kW      terminal power, > 0 discharge
ambient_temperature   °C      outside air (NaN when not reported)
temperature_rise      K       temperature - ambient_temperature (heat from losses, shorts, no cooling)
cell_voltage_spread   mV      cell_voltage_max - cell_voltage_min (imbalance, weak cell)
cell_min_deficit      mV      voltage / n_series - cell_voltage_min (the weakest group's sag)
overpotential         V       n_series x OCV(soc) - voltage (> 0 discharge, < 0 charge)
resistance            mOhm    overpotential / current where abs(current) >= ``MIN_CURRENT_A``, else NaN
c_rate                1/h     current / nominal capacity (216 Ah)
mode_parked           0/1     one-hot of the operating mode (all four 0 = UNKNOWN)
mode_driving          0/1
mode_charging_ac      0/1
mode_charging_dc      0/1
service_days          d       days since the pack entered service (NaN when not reported)
cycles_per_day        EFC/d   charge_cycles / max(service_days, 1): how hard the pack is used
fade_rate             %/y     (100 - soh) / max(service_days / 365.25, 1/12): capacity lost per year
projected_days_left   d       days to SoH 80 % if the fade grows as age^0.75 (calendar law), from
                              today's fade (clipped at >= ``MIN_FADE_PCT``); < 0 past 80 %
projected_cycles_left EFC     projected_days_left x cycles_per_day
sqrt_cycles_left      EFC     EFC to SoH 80 % if the fade grows as sqrt(EFC) (cycle law)
soh_filtered          %       the fade law fitted to the battery's SoH history (Kalman filter with the
                              fleet prior, ``models.state``) at this reading's age and EFC: the SoH
                              estimate freed of the BMS's noise and bias
soh_bias              %       estimated BMS bias (reported - true SoH), minus the law's offset
fade_sd               %       standard deviation of the fitted fade at this reading
physics_rul           EFC     the fitted law extrapolated to SoH 80 % at the recent EFC per day
                              (the physics baseline's P50; 0 when the law says the pack is past it)
physics_rul_sd        EFC     its standard deviation from the fit's covariance
efc_per_day_recent    EFC/d   EFC per service day, moving average over ~60 days
hot_share             0-1     share of readings above 35 °C, moving average over ~180 days
high_soc_share        0-1     share of readings above 90 % SoC, same average
dc_share              0-1     share of readings in DC charging, same average
abs_c_rate_mean       1/h     mean abs(C-rate), same average
thermal_residual      K       temperature - min(ambient, 30 °C set point), average over ~7 days
                              (this day included): heat a working cooling loop would not allow
thermal_trend         K       thermal_residual - its ~90-day baseline (a drifting sensor, a failing loop)
spread_recent         mV      cell-voltage spread, average over ~7 days (this day included)
spread_trend          mV      spread_recent - its ~90-day baseline (a weakening cell)
thermal_peak          K       highest daily thermal residual, decaying over ~90 days (this day included):
                              a failed cooling loop shows on hot or loaded days only; the twin remembers
thermal_excess        K       highest daily mean of ``max(0, temperature - hot spot - 30 °C)`` on quiet
                              readings (not DC charging, losses under 300 W), decaying over ~90 days
                              (this day included): heat above the set point a working loop holds a
                              quiet pack to (``models.state``, slot ``excess_peak``)
history_days          d       service days the twin has followed the pack (since its first reading): a
                              twin attached mid-life has not seen the early life that pins the BMS
                              bias, so its ``fade_sd`` is wide for a reason other than youth
====================  ======  ==========================================================================

:func:`features_from_records` (telemetry-schema field names) and :func:`features_from_frame` (dataset
column names) share :func:`_build`, so the two paths cannot drift apart (tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models import state as st
from models.physics.ocv import OCV_V, SOC_GRID
from models.physics.params import AgingParams, ElectricalParams
from schemas.fields import OPERATING_MODES

FEATURE_NAMES: tuple[str, ...] = (
    "soc", "soh", "voltage", "current", "temperature", "charge_cycles", "power_consumption",
    "ambient_temperature", "temperature_rise", "cell_voltage_spread", "cell_min_deficit",
    "overpotential", "resistance", "c_rate",
    "mode_parked", "mode_driving", "mode_charging_ac", "mode_charging_dc",
    "service_days", "cycles_per_day", "fade_rate", "projected_days_left", "projected_cycles_left",
    "sqrt_cycles_left",
    "soh_filtered", "soh_bias", "fade_sd", "physics_rul", "physics_rul_sd", "efc_per_day_recent",
    "hot_share", "high_soc_share", "dc_share", "abs_c_rate_mean", "thermal_residual", "thermal_trend",
    "spread_recent", "spread_trend", "thermal_peak", "thermal_excess", "history_days",
)
"""Model inputs, in column order (units in the module docstring)."""
READING_FEATURES = 24
"""The first features, computed from the reading alone."""

MODES: tuple[str, ...] = OPERATING_MODES
"""Operating modes of the telemetry schema; index = mode code."""
_MODE_CODE = {name: k for k, name in enumerate(MODES)}

_PACK = ElectricalParams()
N_SERIES = _PACK.n_series
"""Series groups of the pack (96)."""
CAPACITY_AH = _PACK.group_capacity_ah
"""Nominal pack capacity (Ah, 216)."""
MIN_CURRENT_A = 20.0
"""Smallest abs(current) (A, ~0.1C) at which the resistance estimate is defined; below, noise wins."""
EOL_FADE_PCT = 100.0 - AgingParams().eol_soh
"""Capacity fade at end of life (%-points, 20)."""
MIN_FADE_PCT = 0.25
"""Smallest fade used in the projections (%-points): below, the BMS estimate is noise."""
CALENDAR_EXPONENT = AgingParams().qcal_p
"""Time exponent of calendar fade (0.75, Schmalstieg et al. 2014)."""

RECORD_FIELDS: tuple[str, ...] = (
    "soc", "soh", "voltage", "current", "temperature", "charge_cycles", "power_consumption",
    "ambient_temperature", "cell_voltage_min", "cell_voltage_max", "service_days",
)
"""Numeric telemetry fields read by :func:`features_from_records` (plus ``mode``)."""
FRAME_COLUMNS: dict[str, str] = {
    "soc": "SoC", "soh": "SoH", "voltage": "Battery_Voltage", "current": "Battery_Current",
    "temperature": "Battery_Temperature", "charge_cycles": "Charge_Cycles",
    "power_consumption": "Power_Consumption", "ambient_temperature": "Ambient_Temperature",
    "cell_voltage_min": "Cell_Voltage_Min", "cell_voltage_max": "Cell_Voltage_Max",
    "service_days": "Service_Days", "mode": "Mode",
}
"""Telemetry field -> dataset column (Kaggle-style names)."""
_OPTIONAL = frozenset({"ambient_temperature", "cell_voltage_min", "cell_voltage_max", "service_days"})


def _build(cols: Mapping[str, np.ndarray], mode: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Shared vectorised core.

    Args:
        cols: float64 arrays for every name in :data:`RECORD_FIELDS` (NaN = missing).
        mode: int mode codes (index into :data:`MODES`).
        states: float64 (n, ``models.state.SIZE``): each reading's battery state after the reading.

    Returns:
        float32 array of shape (n, len(FEATURE_NAMES)).
    """
    n = len(mode)
    out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
    for k, name in enumerate(FEATURE_NAMES[:8]):
        out[:, k] = cols[name]
    v, i = cols["voltage"], cols["current"]
    v_min = cols["cell_voltage_min"]
    out[:, 8] = cols["temperature"] - cols["ambient_temperature"]
    out[:, 9] = (cols["cell_voltage_max"] - v_min) * 1000.0
    out[:, 10] = (v / N_SERIES - v_min) * 1000.0
    eta = overpotential(cols)
    out[:, 11] = eta
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, 12] = np.where(np.abs(i) >= MIN_CURRENT_A, eta / i * 1000.0, np.nan)
    out[:, 13] = i / CAPACITY_AH
    out[:, 14:18] = mode[:, None] == np.arange(1, 5)[None, :]
    days, efc = cols["service_days"], cols["charge_cycles"]
    age = np.maximum(days, 1.0)  # NaN stays NaN
    per_day = efc / age
    fade = 100.0 - cols["soh"]
    left = EOL_FADE_PCT / np.maximum(fade, MIN_FADE_PCT)  # ratio of end-of-life fade to today's
    days_left = age * (left ** (1.0 / CALENDAR_EXPONENT) - 1.0)
    out[:, 18] = days
    out[:, 19] = per_day
    out[:, 20] = fade / np.maximum(days / 365.25, 1.0 / 12.0)
    out[:, 21] = days_left
    out[:, 22] = days_left * per_day
    out[:, 23] = efc * (left * left - 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out[:, READING_FEATURES:] = _state_features(states, per_day)
    return out


def overpotential(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """``n_series x OCV(soc) - voltage`` (V; > 0 discharging, < 0 charging)."""
    return N_SERIES * np.interp(cols["soc"] / 100.0, SOC_GRID, OCV_V) - cols["voltage"]


def _provisional(states: np.ndarray, ema: int, bucket: int, tau: float) -> np.ndarray:
    """A moving average of ``models.state`` including the open day's mean provisionally."""
    s = states
    mean = s[:, bucket] / s[:, st.B_N]
    gap = np.nan_to_num(np.maximum(s[:, st.DAY] - s[:, st.CLOSED_DAY], 0.0), nan=0.0)
    old = s[:, ema]
    return np.where(np.isnan(old), mean, old + (1.0 - np.exp(-gap / tau)) * (mean - old))


def _state_features(s: np.ndarray, per_day: np.ndarray) -> np.ndarray:
    """The stateful features (from ``soh_filtered`` on) of states after each reading."""
    n = len(s)
    out = np.empty((n, len(FEATURE_NAMES) - READING_FEATURES), dtype=np.float64)
    days, efc = np.maximum(s[:, st.LAST_DAYS], 0.0), np.maximum(s[:, st.EFC], 0.0)
    c, a, b = s[:, st.FADE_C], s[:, st.FADE_A], s[:, st.FADE_B]
    x1, x2 = (days / st.YEAR_D) ** st.CAL_EXP, np.sqrt(efc / st.EFC_SCALE)
    aa, ab, bb = s[:, st.P_AA], s[:, st.P_AB], s[:, st.P_BB]
    out[:, 0] = 100.0 - (a * x1 + b * x2)
    out[:, 1] = -c
    out[:, 2] = np.sqrt(np.maximum(x1 * x1 * aa + 2.0 * x1 * x2 * ab + x2 * x2 * bb, 0.0))
    cpd = s[:, st.EFC_PER_DAY]
    cpd = np.where(np.isnan(cpd), np.nan_to_num(per_day, nan=0.0), cpd)
    rul, sd = physics_rul(days, efc, a, b, aa, ab, bb, cpd)
    out[:, 3], out[:, 4] = rul, sd
    out[:, 5] = s[:, st.EFC_PER_DAY]
    out[:, 6] = s[:, st.HOT_SHARE]
    out[:, 7] = s[:, st.HIGH_SOC_SHARE]
    out[:, 8] = s[:, st.DC_SHARE]
    out[:, 9] = s[:, st.ABS_C_RATE]
    thermal = _provisional(s, st.THERMAL_FAST, st.B_THERMAL, st.TAU_FAST_D)
    out[:, 10] = thermal
    out[:, 11] = thermal - np.where(np.isnan(s[:, st.THERMAL_SLOW]), thermal, s[:, st.THERMAL_SLOW])
    spread = _provisional(s, st.SPREAD_FAST, st.B_SPREAD, st.TAU_FAST_D)
    out[:, 12] = spread
    out[:, 13] = spread - np.where(np.isnan(s[:, st.SPREAD_SLOW]), spread, s[:, st.SPREAD_SLOW])
    gap = np.nan_to_num(np.maximum(s[:, st.DAY] - s[:, st.CLOSED_DAY], 0.0), nan=0.0)
    decay = np.exp(-gap / st.TAU_SLOW_D)
    out[:, 14] = np.fmax(s[:, st.THERMAL_PEAK] * decay, s[:, st.B_THERMAL_MAX])
    out[:, 15] = s[:, st.EXCESS_PEAK] * decay
    out[:, 16] = s[:, st.LAST_DAYS] - s[:, st.FIRST_DAYS]
    return out


PHYSICS_HORIZON_EFC = 10_000.0
"""Longest remaining life the physics extrapolation reports (EFC)."""
MIN_EFC_PER_DAY = 0.01
"""Slowest usage the extrapolation assumes (EFC/d)."""


def physics_rul(days: np.ndarray, efc: np.ndarray, a: np.ndarray, b: np.ndarray, aa: np.ndarray,
                ab: np.ndarray, bb: np.ndarray, cpd: np.ndarray, iterations: int = 32
                ) -> tuple[np.ndarray, np.ndarray]:
    """The fade law ``a*(t/365.25)^0.75 + b*sqrt(EFC/1000)`` extrapolated to the end-of-life fade.

    The pack is assumed to keep its usage (``cpd`` EFC per day). Bisection (``iterations`` halvings
    of :data:`PHYSICS_HORIZON_EFC`), so the result is the same for any batch.

    Returns:
        ``(rul, sd)``: EFC until SoH 80 % (0 when already past it) and its standard deviation from
        the covariance of ``(a, b)`` (fade variance at end of life over the law's slope there).
    """
    a, b = np.maximum(a, 1e-3), np.maximum(b, 1e-3)
    cpd = np.maximum(np.nan_to_num(cpd, nan=MIN_EFC_PER_DAY), MIN_EFC_PER_DAY)

    def fade(extra: np.ndarray) -> np.ndarray:
        t = (days + extra / cpd) / st.YEAR_D
        return a * t ** st.CAL_EXP + b * np.sqrt((efc + extra) / st.EFC_SCALE)

    lo, hi = np.zeros(len(days)), np.full(len(days), PHYSICS_HORIZON_EFC)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        past = fade(mid) >= EOL_FADE_PCT
        hi = np.where(past, mid, hi)
        lo = np.where(past, lo, mid)
    rul = 0.5 * (lo + hi)
    t = np.maximum((days + rul / cpd) / st.YEAR_D, 1e-6)
    e = np.maximum((efc + rul) / st.EFC_SCALE, 1e-6)
    x1, x2 = t ** st.CAL_EXP, np.sqrt(e)
    var = x1 * x1 * aa + 2.0 * x1 * x2 * ab + x2 * x2 * bb
    slope = a * st.CAL_EXP * x1 / t / st.YEAR_D / cpd + b * 0.5 / x2 / st.EFC_SCALE
    return rul, np.sqrt(np.maximum(var, 0.0)) / slope


def replay(batteries: Sequence[Any], cols: Mapping[str, np.ndarray], mode: np.ndarray,
           ts_ms: np.ndarray, states: dict[Any, st.State] | None = None,
           taken: list[bool] | None = None) -> np.ndarray:
    """Run ``models.state.update`` over readings in order, one state per battery; return each
    reading's state after it (float64, (n, ``models.state.SIZE``)).

    Args:
        batteries: Battery of each reading (readings of one battery in time order).
        cols: As for :func:`_build`.
        mode: Mode codes.
        ts_ms: Event times (ms since the epoch; NaN = unknown).
        states: States to start from and update in place (default: every battery new).
        taken: Filled with whether each reading was taken (``models.state.update``: a reading
            not newer than its battery's last is not).
    """
    states = {} if states is None else states
    spread = ((cols["cell_voltage_max"] - cols["cell_voltage_min"]) * 1000.0).tolist()
    heat = (overpotential(cols) * cols["current"]).tolist()
    columns = zip(batteries, cols["service_days"].tolist(), cols["charge_cycles"].tolist(), ts_ms.tolist(),
                  cols["soh"].tolist(), cols["soc"].tolist(), cols["temperature"].tolist(),
                  cols["ambient_temperature"].tolist(), cols["current"].tolist(), mode.tolist(), spread, heat,
                  strict=True)
    flat: list[float] = []  # the states one after another: 2.5x cheaper than a tuple per row
    update, new = st.update, st.new_state
    took = taken.append if taken is not None else None
    for battery, days, efc, ts, soh, soc, temp, amb, cur, m, spr, q in columns:
        s = states.get(battery)
        if s is None:
            s = states[battery] = new()
        ok = update(s, days, efc, ts, soh, soc, temp, amb, cur, m, spr, q)
        if took is not None:
            took(ok)
        flat += s
    return np.fromiter(flat, dtype=np.float64, count=len(flat)).reshape(-1, st.SIZE)


def _float_column(records: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    """One numeric field of every record as float64 (None / absent -> NaN for optional fields)."""
    if name in _OPTIONAL:
        return np.array([r.get(name) for r in records], dtype=np.float64)
    return np.fromiter((r[name] for r in records), dtype=np.float64, count=len(records))


def record_columns(records: Sequence[Mapping[str, Any]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The numeric columns (:data:`RECORD_FIELDS`) and mode codes of telemetry records."""
    cols = {name: _float_column(records, name) for name in RECORD_FIELDS}
    get = _MODE_CODE.get
    mode = np.fromiter((get(r.get("mode", ""), 0) for r in records), dtype=np.int64, count=len(records))
    return cols, mode


def features_from_records(records: Sequence[Mapping[str, Any]], states: np.ndarray | None = None) -> np.ndarray:
    """Features of live telemetry records (telemetry-schema field names).

    Args:
        records: Mappings with ``soc`` (%), ``soh`` (%), ``voltage`` (V), ``current`` (A),
            ``temperature`` (°C), ``charge_cycles`` (EFC), ``power_consumption`` (kW),
            ``ambient_temperature`` / ``cell_voltage_min`` / ``cell_voltage_max`` / ``service_days``
            (°C / V / V / days, None or absent when not reported) and ``mode`` (one of :data:`MODES`; unknown -> UNKNOWN);
            ``battery_id`` and ``timestamp`` (ms) are read when ``states`` is None.
        states: Each record's battery state after it (the score worker's partition state,
            ``streams.state.estimator``); None = replay the records themselves from new states.

    Returns:
        float32 array of shape (len(records), len(FEATURE_NAMES)).

    Raises:
        KeyError: If a required numeric field is absent.
    """
    cols, mode = record_columns(records)
    if states is None:
        states = replay([r.get("battery_id", "") for r in records], cols, mode, record_timestamps(records))
    return _build(cols, mode, states)


def record_timestamps(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Event times of records (``timestamp``, ms) as float64 (NaN when absent)."""
    return np.array([r.get("timestamp") for r in records], dtype=np.float64)


def features_from_columns(cols: Mapping[str, np.ndarray], mode: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Features of readings already split into columns (:func:`record_columns`) with their states
    after each reading (:func:`replay`, or the score worker's estimator)."""
    return _build(cols, mode, states)


def mode_codes(values: pd.Series | np.ndarray) -> np.ndarray:
    """Mode names -> codes (index into :data:`MODES`; unknown or missing -> 0)."""
    codes = pd.Series(np.asarray(values, dtype=object)).map(_MODE_CODE)
    return codes.fillna(0).to_numpy(dtype=np.int64)


def frame_timestamps_ms(df: pd.DataFrame) -> np.ndarray:
    """Event times of a frame's rows, ms since the epoch as float64 (NaN without ``Timestamp``)."""
    if "Timestamp" not in df.columns:
        return np.full(len(df), np.nan)
    t = pd.to_datetime(df["Timestamp"], utc=True, errors="coerce").dt.tz_localize(None)
    ns = t.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return np.where(t.isna().to_numpy(), np.nan, (ns // 1_000_000).astype(np.float64))


def features_from_frame(df: pd.DataFrame) -> np.ndarray:
    """Features of a dataset frame (generated dataset or Kaggle file; column names of the card).

    Each battery's rows (``battery_id``; all one battery without it) are replayed in frame order
    through ``models.state.update`` (the dataset keeps a battery's rows in time order). Missing
    optional columns (ambient, cell voltages, ``Service_Days``, ``Mode``) become NaN / UNKNOWN.

    Args:
        df: Frame with at least SoC, SoH, Battery_Voltage, Battery_Current, Battery_Temperature,
            Charge_Cycles, Power_Consumption.

    Returns:
        float32 array of shape (len(df), len(FEATURE_NAMES)).

    Raises:
        KeyError: If a required column is absent.
    """
    cols: dict[str, np.ndarray] = {}
    for name in RECORD_FIELDS:
        column = FRAME_COLUMNS[name]
        if column not in df.columns and name in _OPTIONAL:
            cols[name] = np.full(len(df), np.nan)
            continue
        cols[name] = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    mode = mode_codes(df["Mode"]) if "Mode" in df.columns else np.zeros(len(df), dtype=np.int64)
    batteries = df["battery_id"].astype(str).tolist() if "battery_id" in df.columns else [""] * len(df)
    states = replay(batteries, cols, mode, frame_timestamps_ms(df))
    return _build(cols, mode, states)


__all__ = ["FEATURE_NAMES", "MODES", "READING_FEATURES", "features_from_columns", "features_from_frame",
           "features_from_records", "frame_timestamps_ms", "mode_codes", "overpotential", "physics_rul",
           "record_columns", "record_timestamps", "replay"]
