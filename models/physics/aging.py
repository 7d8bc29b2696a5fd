"""Calendar and cycle aging (Schmalstieg et al. 2014), advanced by equivalent ("virtual") time.

Capacity loss ``q = q_cal + q_cyc`` with ``q_cal = alpha t^0.75`` (t in days) and
``q_cyc = beta sqrt(Ah)``; resistance growth ``r = r_cal + r_cyc`` with ``r_cal = alpha_r t^0.75`` and
``r_cyc = beta_r Ah`` (linear). When the stress (and so the rate) changes, a power law is continued
from the *equivalent* time at which the new rate would have produced the present loss:
``t_eq = (q / rate)^(1/p)``, ``q <- rate (t_eq + dt)^p`` (the method of NREL BLAST-Lite,
``update_power_state``). Losses therefore never decrease. Ah is the charge throughput scaled to the
2.15 Ah Schmalstieg test cell: ``Ah_test = Ah_pack / Q_pack_nominal * 2.15``.
"""

from __future__ import annotations

import numpy as np

from models.physics.params import GAS_CONSTANT, KELVIN, AgingParams


def calendar_rates(v_ocv: np.ndarray, temp_k: np.ndarray, p: AgingParams) -> tuple[np.ndarray, np.ndarray]:
    """Calendar rates of capacity fade and resistance growth.

    Args:
        v_ocv: Cell open-circuit voltage (V), the SoC stress.
        temp_k: Cell temperature (K).
        p: Aging parameters.

    Returns:
        ``(alpha_q, alpha_r)``: fractional capacity loss and resistance gain per day^0.75 (>= 0).
    """
    aq = (p.qcal_a_v * v_ocv + p.qcal_b) * 1e6 * np.exp(p.qcal_c_k / temp_k)
    ar = (p.rcal_a_v * v_ocv + p.rcal_b) * 1e5 * np.exp(p.rcal_c_k / temp_k)
    return np.maximum(aq, 0.0) * p.scale, np.maximum(ar, 0.0) * p.scale


def cycle_stress_factor(c_rate: np.ndarray, temp_k: np.ndarray, p: AgingParams) -> np.ndarray:
    """Temperature and C-rate multiplier of the cycle rates, 1 at 35 °C and 1C (Wang et al. 2011 form).

    Args:
        c_rate: |I| / Q_nominal (1/h).
        temp_k: Cell temperature (K).
        p: Aging parameters (J/mol).

    Returns:
        Dimensionless factor.
    """
    t_ref = p.cyc_t_ref_c + KELVIN
    num = (-p.cyc_ea_j_mol + p.cyc_crate_j_mol * c_rate) / temp_k
    ref = (-p.cyc_ea_j_mol + p.cyc_crate_j_mol) / t_ref
    return np.exp((num - ref) / GAS_CONSTANT)


def cycle_rates(
    v_ocv: np.ndarray, dod: np.ndarray, factor: np.ndarray, p: AgingParams
) -> tuple[np.ndarray, np.ndarray]:
    """Cycle rates of capacity fade and resistance growth.

    Args:
        v_ocv: Cell OCV (V), stands in for Schmalstieg's RMS voltage over the cycle.
        dod: Depth of discharge of the typical cycle (fraction 0..1).
        factor: :func:`cycle_stress_factor` (dimensionless).
        p: Aging parameters.

    Returns:
        ``(beta_q, beta_r)``: capacity loss per sqrt(Ah_test) and resistance gain per Ah_test (>= 0).
    """
    dv_q = v_ocv - p.qcyc_b_v
    dv_r = v_ocv - p.rcyc_b_v
    bq = p.qcyc_a * dv_q * dv_q + p.qcyc_c + p.qcyc_d_dod * dod
    br = p.rcyc_a * dv_r * dv_r + p.rcyc_c + p.rcyc_d_dod * dod
    return np.maximum(bq, 0.0) * factor * p.scale, np.maximum(br, 0.0) * factor * p.scale


def power_law_advance(loss: np.ndarray, rate: np.ndarray, dx: np.ndarray | float, exponent: float) -> np.ndarray:
    """Advance ``loss = rate x^exponent`` by dx from the equivalent x of the present loss.

    Args:
        loss: Present loss (fraction, >= 0).
        rate: Present rate (fraction per unit x^exponent, >= 0).
        dx: Increment of the driving variable (days or Ah_test, >= 0).
        exponent: Power-law exponent (0 < exponent <= 1).

    Returns:
        New loss, never below ``loss``.
    """
    safe = np.where(rate > 0.0, rate, 1.0)
    x_eq = np.where(rate > 0.0, (loss / safe) ** (1.0 / exponent), 0.0)
    new = np.where(rate > 0.0, safe * (x_eq + dx) ** exponent, loss)
    return np.maximum(new, loss)


def days_to_loss(
    q_cal: np.ndarray, q_cyc: np.ndarray, alpha_q: np.ndarray, beta_q: np.ndarray,
    ah_per_day: np.ndarray, target_loss: float, max_days: float = 36_500.0, iters: int = 40,
) -> np.ndarray:
    """Days until ``q_cal + q_cyc`` reaches ``target_loss`` under constant mean rates (bisection).

    Args:
        q_cal: Present calendar loss (fraction).
        q_cyc: Present cycle loss (fraction).
        alpha_q: Mean calendar rate (per day^0.75).
        beta_q: Mean cycle rate (per sqrt(Ah_test)).
        ah_per_day: Mean throughput (Ah_test per day).
        target_loss: Loss at end of life (fraction, 0.2 for SoH 80 %).
        max_days: Upper bound of the search (days); batteries that never get there return it.
        iters: Bisection iterations.

    Returns:
        Days to the target (0 when already past it).
    """
    lo = np.zeros_like(q_cal)
    hi = np.full_like(q_cal, max_days)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        loss = power_law_advance(q_cal, alpha_q, mid, 0.75) + power_law_advance(
            q_cyc, beta_q, ah_per_day * mid, 0.5)
        above = loss >= target_loss
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return np.where(q_cal + q_cyc >= target_loss, 0.0, hi)
