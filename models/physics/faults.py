"""Faults with ground-truth onset times, and their effect on the physics and the sensors.

Each battery carries at most one planned fault (code and onset, in days of battery life); it is
*active* from its onset on and its severity ramps from 0 to 1. Codes index :data:`FAULT_NAMES`.

- ``internal_short``: a leakage path inside the pack; self-discharge current ``V / R_short`` with
  ``R_short`` falling log-linearly from 5 kohm to 200 ohm over 30 days (pack level), its heat
  ``V^2 / R_short`` goes into the pack and a local hot spot seen by the max-temperature sensor.
- ``cooling_failure``: the liquid-cooling conductance drops to 0 (pump or chiller failure).
- ``weak_cell``: one series group loses capacity (to 70 %) and gains resistance (1.8x); it is
  top-balanced, so it empties first and widens the cell_voltage_min / max spread, most at low SoC and
  under load.
- ``sensor_drift``: the max-temperature sensor reads high by +0.3 °C/day, up to +15 °C.
- ``sensor_dropout``: the battery's telemetry link drops out: ``valid`` is False (the simulator emits
  nothing) for exponential stretches (mean 10 min) between stretches of normal reporting (mean 30 min).
"""

from __future__ import annotations

import numpy as np

from models.physics.params import FaultParams

FAULT_NAMES: tuple[str, ...] = (
    "none", "internal_short", "cooling_failure", "weak_cell", "sensor_drift", "sensor_dropout",
)
"""Fault code -> name."""
NONE, INTERNAL_SHORT, COOLING_FAILURE, WEAK_CELL, SENSOR_DRIFT, SENSOR_DROPOUT = range(6)


def draw_faults(
    rng: np.random.Generator, n: int, p: FaultParams, min_days: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """Plan one fault per battery with probability ``p.incidence``.

    Args:
        rng: Random generator.
        n: Number of batteries.
        p: Fault parameters.
        min_days: Earliest onset (days of life).

    Returns:
        ``(code, onset_days)``: int8 codes (0 = none) and onsets in days of battery life (inf if none).
    """
    has = rng.random(n) < p.incidence
    weights = np.asarray(p.weights, dtype=float)
    kinds = rng.choice(np.arange(1, len(FAULT_NAMES)), size=n, p=weights / weights.sum())
    onset = rng.uniform(min_days, p.onset_max_days, size=n)
    code = np.where(has, kinds, NONE).astype(np.int8)
    return code, np.where(has, onset, np.inf)


def active_fault(code: np.ndarray, onset_days: np.ndarray, life_days: np.ndarray | float) -> np.ndarray:
    """Code of the fault active at ``life_days`` (0 when none), int8."""
    return np.where(life_days >= onset_days, code, NONE).astype(np.int8)


def severity(onset_days: np.ndarray, life_days: np.ndarray | float, ramp_days: float) -> np.ndarray:
    """Ramp 0..1 of a fault's severity, ``(life - onset) / ramp`` clipped (dimensionless)."""
    return np.clip((life_days - onset_days) / ramp_days, 0.0, 1.0)


def short_conductance(active: np.ndarray, onset_days: np.ndarray, life_days: np.ndarray | float,
                      p: FaultParams) -> np.ndarray:
    """Leakage conductance of an internal short (S, pack level; 0 without the fault)."""
    s = severity(onset_days, life_days, p.short_ramp_days)
    r = p.short_r_start_ohm * (p.short_r_end_ohm / p.short_r_start_ohm) ** s
    return np.where(active == INTERNAL_SHORT, 1.0 / r, 0.0)


def weak_fraction(active: np.ndarray, onset_days: np.ndarray, life_days: np.ndarray | float,
                  p: FaultParams) -> np.ndarray:
    """Capacity of the weakest group relative to the others (1 without the fault)."""
    s = severity(onset_days, life_days, p.weak_ramp_days)
    return np.where(active == WEAK_CELL, 1.0 - (1.0 - p.weak_min_frac) * s, 1.0)


def drift_c(active: np.ndarray, onset_days: np.ndarray, life_days: np.ndarray | float,
            p: FaultParams) -> np.ndarray:
    """Bias of the max-temperature sensor (°C, 0 without the fault)."""
    bias = np.minimum((life_days - onset_days) * p.drift_c_per_day, p.drift_max_c)
    return np.where(active == SENSOR_DRIFT, bias, 0.0)


def advance_dropout(
    rng: np.random.Generator, link_up: np.ndarray, left_s: np.ndarray, active: np.ndarray,
    dt_s: float, p: FaultParams,
) -> None:
    """Advance the telemetry-link state machine in place (only batteries with the dropout fault drop).

    Args:
        rng: Random generator.
        link_up: bool, True while the battery reports.
        left_s: Seconds left in the present link state.
        active: Active fault codes.
        dt_s: Step (s).
        p: Fault parameters.
    """
    left_s -= dt_s
    flip = np.flatnonzero((left_s <= 0.0) & (active == SENSOR_DROPOUT))
    if flip.size:
        going_down = link_up[flip]
        link_up[flip] = ~going_down
        mean = np.where(going_down, p.dropout_off_s, p.dropout_on_s)
        left_s[flip] = rng.exponential(1.0, flip.size) * mean
    link_up[active != SENSOR_DROPOUT] = True
