"""Physics: thermal steady state (closed form) and the aging model (Schmalstieg et al. 2014)."""

from __future__ import annotations

import numpy as np
import pytest

from models.physics import aging, thermal
from models.physics.ocv import ocv
from models.physics.params import AgingParams, ThermalParams


def _settle(heat_w: float, ambient_c: float, ua_factor: float, p: ThermalParams) -> float:
    temp = np.array([ambient_c])
    for _ in range(2000):
        temp = thermal.thermal_step(temp, np.array([heat_w]), ambient_c, ua_factor, 600.0, p)
    return float(temp[0])


def test_thermal_steady_state_without_cooling_matches_closed_form() -> None:
    """Cooling failed: T = T_amb + Q / hA (Pesaran 2002 lumped balance)."""
    p = ThermalParams()
    assert _settle(150.0, 25.0, 0.0, p) == pytest.approx(25.0 + 150.0 / p.ha_ambient_w_k, abs=1e-6)


def test_thermal_steady_state_with_cooling_matches_closed_form() -> None:
    """Cooling on: T = (Q + hA T_amb + UA T_c) / (hA + UA), below the open-loop temperature."""
    p = ThermalParams()
    q, amb = 3000.0, 25.0
    expected = (q + p.ha_ambient_w_k * amb + p.ua_cooling_w_k * p.t_coolant_c) / (
        p.ha_ambient_w_k + p.ua_cooling_w_k)
    assert expected > p.t_cooling_on_c
    assert _settle(q, amb, 1.0, p) == pytest.approx(expected, abs=1e-6)
    assert float(thermal.steady_state_c(q, amb, 0.0, p)) > 200.0


def _calendar_loss_one_year(temp_c: float) -> float:
    p = AgingParams()
    aq, _ = aging.calendar_rates(ocv(np.array([0.5])), np.array([temp_c + 273.15]), p)
    return float(aging.power_law_advance(np.zeros(1), aq, 365.0, p.qcal_p)[0])


def test_calendar_fade_matches_schmalstieg_order_of_magnitude() -> None:
    """Schmalstieg 2014 (NMC, 50 % SoC): ~2-3 %/year at 25 °C and ~10 %/year at 45 °C."""
    assert 0.02 <= _calendar_loss_one_year(25.0) <= 0.03
    assert 0.08 <= _calendar_loss_one_year(45.0) <= 0.13


def test_cycle_fade_grows_with_dod_and_sqrt_throughput() -> None:
    """Cycle loss ~ beta(DoD) sqrt(Ah): 4x throughput doubles the loss; deeper cycles age faster."""
    p = AgingParams()
    v = ocv(np.array([0.5, 0.5]))
    bq, _ = aging.cycle_rates(v, np.array([0.2, 0.8]), np.ones(2), p)
    assert bq[1] > bq[0]
    q1 = aging.power_law_advance(np.zeros(2), bq, 1000.0, p.qcyc_p)
    q4 = aging.power_law_advance(np.zeros(2), bq, 4000.0, p.qcyc_p)
    assert q4 == pytest.approx(2.0 * q1)


def test_virtual_time_update_continues_the_power_law_and_never_decreases() -> None:
    """Small steps at constant stress equal one big step; a change of stress never lowers the loss."""
    rate = np.array([3e-4])
    q = np.zeros(1)
    for _ in range(100):
        q = aging.power_law_advance(q, rate, 3.65, 0.75)
    assert q[0] == pytest.approx(3e-4 * 365.0**0.75, rel=1e-9)
    lower = aging.power_law_advance(q, rate / 10.0, 1.0, 0.75)
    assert lower[0] >= q[0]


def test_cycle_factor_is_one_at_reference_and_higher_when_hot() -> None:
    """Wang et al. 2011 form: factor 1 at 35 °C / 1C, larger at 45 °C and at 2C."""
    p = AgingParams()
    f = aging.cycle_stress_factor(np.array([1.0, 1.0, 2.0]), np.array([308.15, 318.15, 308.15]), p)
    assert f[0] == pytest.approx(1.0)
    assert f[1] > 1.0 and f[2] > 1.0
