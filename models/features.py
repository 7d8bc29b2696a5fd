"""The one feature module: model inputs for training (data frames) and live scoring (records).

Every feature is computed from **one reading** only. The training data is sampled days apart while
the live stream runs at 1 Hz, so per-battery history (rolling means, deltas) would differ between
training and serving; none is used. The pack's age (``service_days``, days since it entered service)
stands in for history: with it one reading tells how fast the pack is used and how fast it fades,
which is what remaining life depends on.

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
====================  ======  ==========================================================================

:func:`features_from_records` (telemetry-schema field names) and :func:`features_from_frame` (dataset
column names) share :func:`_build`, so the two paths cannot drift apart (tested).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

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
)
"""Model inputs, in column order (units in the module docstring)."""

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


def _build(cols: Mapping[str, np.ndarray], mode: np.ndarray) -> np.ndarray:
    """Shared vectorised core.

    Args:
        cols: float64 arrays for every name in :data:`RECORD_FIELDS` (NaN = missing).
        mode: int mode codes (index into :data:`MODES`).

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
    eta = N_SERIES * np.interp(cols["soc"] / 100.0, SOC_GRID, OCV_V) - v
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
    return out


def _float_column(records: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    """One numeric field of every record as float64 (None / absent -> NaN for optional fields)."""
    if name in _OPTIONAL:
        return np.array([r.get(name) for r in records], dtype=np.float64)
    return np.fromiter((r[name] for r in records), dtype=np.float64, count=len(records))


def features_from_records(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Features of live telemetry records (telemetry-schema field names).

    Args:
        records: Mappings with ``soc`` (%), ``soh`` (%), ``voltage`` (V), ``current`` (A),
            ``temperature`` (°C), ``charge_cycles`` (EFC), ``power_consumption`` (kW),
            ``ambient_temperature`` / ``cell_voltage_min`` / ``cell_voltage_max`` / ``service_days``
            (°C / V / V / days, None or absent when not reported) and ``mode`` (one of :data:`MODES`; unknown -> UNKNOWN).

    Returns:
        float32 array of shape (len(records), len(FEATURE_NAMES)).

    Raises:
        KeyError: If a required numeric field is absent.
    """
    cols = {name: _float_column(records, name) for name in RECORD_FIELDS}
    get = _MODE_CODE.get
    mode = np.fromiter((get(r.get("mode", ""), 0) for r in records), dtype=np.int64, count=len(records))
    return _build(cols, mode)


def mode_codes(values: pd.Series | np.ndarray) -> np.ndarray:
    """Mode names -> codes (index into :data:`MODES`; unknown or missing -> 0)."""
    codes = pd.Series(np.asarray(values, dtype=object)).map(_MODE_CODE)
    return codes.fillna(0).to_numpy(dtype=np.int64)


def features_from_frame(df: pd.DataFrame) -> np.ndarray:
    """Features of a dataset frame (generated dataset or Kaggle file; column names of the card).

    Missing optional columns (ambient, cell voltages, ``Service_Days``, ``Mode``) become NaN / UNKNOWN.

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
    return _build(cols, mode)


__all__ = ["FEATURE_NAMES", "MODES", "features_from_frame", "features_from_records", "mode_codes"]
