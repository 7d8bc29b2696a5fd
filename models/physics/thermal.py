"""Lumped pack heat balance with convection to ambient and thermostatic liquid cooling.

``C dT/dt = Q - hA (T - T_amb) - UA_c (T - T_c)`` where ``UA_c`` is on above the set point. With Q and
the cooling state held over a step, the exact solution is ``T(t+dt) = T_inf + (T - T_inf) exp(-k dt)``
with ``T_inf = (Q + hA T_amb + UA_c T_c) / (hA + UA_c)`` and ``k = (hA + UA_c) / C`` (Pesaran,
J. Power Sources 110 (2002) 377-382, lumped model).
"""

from __future__ import annotations

import numpy as np

from models.physics.params import ThermalParams


def steady_state_c(
    heat_w: np.ndarray | float, ambient_c: np.ndarray | float, cooling_ua_w_k: np.ndarray | float,
    p: ThermalParams,
) -> np.ndarray:
    """Closed-form steady-state temperature (°C) for constant heat (W) and cooling conductance (W/K)."""
    g = p.ha_ambient_w_k + np.asarray(cooling_ua_w_k)
    return (np.asarray(heat_w) + p.ha_ambient_w_k * np.asarray(ambient_c)
            + cooling_ua_w_k * p.t_coolant_c) / g


def cooling_conductance(temp_c: np.ndarray, ua_factor: np.ndarray | float, p: ThermalParams) -> np.ndarray:
    """Active cooling conductance (W/K): ``UA`` above the set point, 0 below; ``ua_factor`` 0 = failed."""
    return np.where(temp_c > p.t_cooling_on_c, p.ua_cooling_w_k, 0.0) * ua_factor


def thermal_step(
    temp_c: np.ndarray, heat_w: np.ndarray, ambient_c: np.ndarray | float, ua_factor: np.ndarray | float,
    dt_s: float, p: ThermalParams,
) -> np.ndarray:
    """Advance the pack temperature one step, exactly for constant inputs over the step.

    Args:
        temp_c: Pack mean temperature (°C).
        heat_w: Heat generated in the pack (W).
        ambient_c: Ambient temperature (°C).
        ua_factor: Cooling health (1 nominal, 0 failed).
        dt_s: Step (s).
        p: Thermal parameters.

    Returns:
        New pack temperature (°C).
    """
    ua = cooling_conductance(temp_c, ua_factor, p)
    t_inf = steady_state_c(heat_w, ambient_c, ua, p)
    decay = np.exp(-(p.ha_ambient_w_k + ua) * (dt_s / p.heat_capacity_j_k))
    return t_inf + (temp_c - t_inf) * decay
