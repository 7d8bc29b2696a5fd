"""The BMS view of a pack: noisy sensors, the max-temperature sensor and the estimated SoH.

Noise levels (1 sigma, *assumptions* typical of automotive BMS hardware): pack voltage 0.2 V, current
0.5 A, temperature 0.2 °C, SoC estimate 0.5 %-points. The reported SoH is the true SoH plus a
per-battery bias and per-reading noise (``SpreadParams``), ~1 % in total: the BMS estimate is not
the label.
"""

from __future__ import annotations

import numpy as np

from models.physics import faults
from models.physics.pack import Packs
from models.physics.params import PackParams

READING_FIELDS: tuple[str, ...] = (
    "soc", "soh", "voltage", "current", "temperature", "ambient_temperature", "charge_cycles",
    "power_consumption", "cell_voltage_min", "cell_voltage_max", "service_days", "mode", "valid",
)
"""Keys of :func:`readings`, in order."""


def max_temperature_c(packs: Packs, drift_c: np.ndarray, p: PackParams) -> np.ndarray:
    """True reading of the hottest sensor (°C): mean + hot spot from heat + short hot spot + drift."""
    return (packs.temp_c + p.thermal.hotspot_k_per_w * packs.heat_w
            + p.faults.short_hotspot_k_per_w * packs.leak_w + drift_c)


def weak_cell_state(active: np.ndarray, onset: np.ndarray, life_days: np.ndarray,
                    p: PackParams) -> tuple[np.ndarray, np.ndarray]:
    """Capacity fraction and resistance factor of the weakest group (1, 1 without the fault)."""
    frac = faults.weak_fraction(active, onset, life_days, p.faults)
    f = p.faults
    r = 1.0 + (f.weak_r_factor - 1.0) * (1.0 - frac) / (1.0 - f.weak_min_frac)
    return frac, r


def readings(
    rng: np.random.Generator, packs: Packs, mode: np.ndarray, ambient_c: np.ndarray,
    active: np.ndarray, onset: np.ndarray, life_days: np.ndarray, bms_bias: np.ndarray,
    imbalance_v: np.ndarray, valid: np.ndarray, p: PackParams,
) -> dict[str, np.ndarray]:
    """Telemetry of every pack (see :data:`READING_FIELDS`; units in ``models.physics.fleet``).

    Args:
        rng: Generator of the sensor noise (separate from the physics so reading does not change it).
        packs: Pack state after the last step.
        mode: Usage mode codes.
        ambient_c: Ambient temperature (°C).
        active: Active fault codes.
        onset: Fault onsets (days of life).
        life_days: Battery age (days; reported as ``service_days``).
        bms_bias: Per-battery bias of the SoH estimate (%-points).
        imbalance_v: Per-battery cell spread at rest (V).
        valid: False where the telemetry link is down.
        p: Parameters.
    """
    n = packs.n
    noise = rng.standard_normal((5, n))
    v = packs.voltage_v + 0.2 * noise[0]
    i = packs.current_a + 0.5 * noise[1]
    drift = faults.drift_c(active, onset, life_days, p.faults)
    frac, r_w = weak_cell_state(active, onset, life_days, p)
    v_min, v_max = packs.cell_voltages(frac, r_w, imbalance_v)
    soh = packs.soh_pct() + bms_bias + p.spread.bms_soh_noise_pct * noise[3]
    return {
        "soc": np.clip(100.0 * packs.soc + 0.5 * noise[4], 0.0, 100.0),
        "soh": np.clip(soh, 0.0, 100.0),
        "voltage": v,
        "current": i,
        "temperature": max_temperature_c(packs, drift, p) + 0.2 * noise[2],
        "ambient_temperature": np.asarray(ambient_c, dtype=float).copy(),
        "charge_cycles": np.floor(packs.efc).astype(np.int64),
        "power_consumption": v * i / 1000.0,
        "cell_voltage_min": v_min,
        "cell_voltage_max": v_max,
        "service_days": np.asarray(life_days, dtype=float).copy(),
        "mode": mode.astype(np.int64),
        "valid": valid.copy(),
    }
