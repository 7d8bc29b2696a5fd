"""Thevenin equivalent circuit (R0 + two RC pairs), exact exponential discretisation, vectorised.

All quantities are per series *group* (``n_parallel`` cells in parallel); the pack voltage is
``n_series`` times the group voltage. Sign convention: current > 0 discharges (A).

For a step of length dt with current I held constant, each RC voltage obeys exactly
``v(t+dt) = a v(t) + R (1 - a) I`` with ``a = exp(-dt / tau)``, stable for any dt (Plett, *Battery
Management Systems Vol. I*, Artech House 2015, ch. 2). The terminal voltage at the end of the step is
``V = OCV(SoC) - a1 v1 - a2 v2 - R_eff I`` with ``R_eff = R0 + R1 (1 - a1) + R2 (1 - a2)``, so a power
request P has the closed-form current ``I = (E - sqrt(E^2 - 4 R_eff P)) / (2 R_eff)``.
"""

from __future__ import annotations

import numpy as np

from models.physics.params import GAS_CONSTANT, KELVIN, ElectricalParams


def resistance_factor(temp_c: np.ndarray, p: ElectricalParams) -> np.ndarray:
    """Arrhenius multiplier of the resistances, 1 at ``p.t_ref_c``.

    Args:
        temp_c: Cell temperature (°C).
        p: Electrical parameters (activation energy in J/mol).

    Returns:
        Dimensionless factor (> 1 below the reference temperature).
    """
    inv_t = 1.0 / (np.asarray(temp_c) + KELVIN)
    return np.exp(p.r_activation_j_mol / GAS_CONSTANT * (inv_t - 1.0 / (p.t_ref_c + KELVIN)))


def rc_decay(dt_s: float, p: ElectricalParams) -> tuple[float, float]:
    """Decay factors ``a = exp(-dt/tau)`` of the two RC pairs (dimensionless) for a step of dt_s seconds."""
    return float(np.exp(-dt_s / p.tau1_s)), float(np.exp(-dt_s / p.tau2_s))


def current_for_power(power_w: np.ndarray, emf_v: np.ndarray, r_eff_ohm: np.ndarray) -> np.ndarray:
    """Group current that delivers a requested group power (closed form of P = (E - R I) I).

    Args:
        power_w: Requested power per group (W, > 0 discharge). Beyond the maximum deliverable power
            ``E^2 / (4 R)`` the current saturates at ``E / (2 R)``.
        emf_v: Voltage behind R_eff, ``OCV - a1 v1 - a2 v2`` (V).
        r_eff_ohm: Effective step resistance (ohm).

    Returns:
        Current (A, > 0 discharge).
    """
    disc = np.maximum(emf_v * emf_v - 4.0 * r_eff_ohm * power_w, 0.0)
    return (emf_v - np.sqrt(disc)) / (2.0 * r_eff_ohm)


def limit_current(
    current_a: np.ndarray, emf_v: np.ndarray, r_eff_ohm: np.ndarray, v_min: float, v_max: float
) -> np.ndarray:
    """Clamp a current so that the terminal voltage stays within [v_min, v_max] (the BMS limits).

    Args:
        current_a: Requested group current (A, > 0 discharge).
        emf_v: Voltage behind R_eff (V).
        r_eff_ohm: Effective step resistance (ohm).
        v_min: Lowest allowed group voltage (V); discharge only while above it.
        v_max: Highest allowed group voltage (V, the CV level); charge only while below it.

    Returns:
        Clamped current (A).
    """
    i_max = np.maximum((emf_v - v_min) / r_eff_ohm, 0.0)
    i_min = np.minimum((emf_v - v_max) / r_eff_ohm, 0.0)
    return np.clip(current_a, i_min, i_max)


def rc_advance(v_rc: np.ndarray, r_ohm: np.ndarray, decay: float, current_a: np.ndarray) -> None:
    """Advance one RC voltage in place: ``v <- a v + R (1 - a) I`` (V)."""
    v_rc *= decay
    v_rc += r_ohm * (1.0 - decay) * current_a
