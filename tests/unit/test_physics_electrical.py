"""Physics: OCV table and the equivalent circuit against known values."""

from __future__ import annotations

import numpy as np
import pytest

from models.physics import circuit
from models.physics.ocv import OCV_V, mean_ocv, ocv, soc_from_ocv
from models.physics.pack import Packs
from models.physics.params import ElectricalParams, PackParams


def test_ocv_end_points_match_schmalstieg_table() -> None:
    """Schmalstieg et al. 2014 Fig. 1 / BLAST-Lite: 3.331 V at 0 %, 4.162 V at 100 % SoC."""
    assert ocv(0.0) == pytest.approx(3.331, abs=1e-3)
    assert ocv(1.0) == pytest.approx(4.162, abs=1e-3)
    assert np.all(np.diff(OCV_V) > 0)
    assert soc_from_ocv(ocv(0.37)) == pytest.approx(0.37, abs=1e-9)


def test_pack_nameplate_is_75_kwh_and_350_400_v() -> None:
    """96s3p of 72 Ah NMC cells: ~75 kWh, 320-400 V across the OCV range."""
    e = ElectricalParams()
    assert 74.0 <= e.nominal_energy_kwh <= 77.0
    assert 350.0 <= ocv(0.5) * e.n_series <= 400.0
    assert ocv(1.0) * e.n_series <= 400.0


def test_rc_discretisation_is_exact_for_a_step_current() -> None:
    """RC response to a current step is R I (1 - exp(-t/tau)) whatever the step size (Plett 2015)."""
    e = ElectricalParams()
    r1 = np.array([e.r1_cell_ohm])
    for dt in (0.1, 7.0, 1000.0):
        v = np.zeros(1)
        a1, _ = circuit.rc_decay(dt, e)
        steps = round(30.0 / dt) or 1
        for _ in range(steps):
            circuit.rc_advance(v, r1, a1, np.array([100.0]))
        t = steps * dt
        assert v[0] == pytest.approx(e.r1_cell_ohm * 100.0 * (1 - np.exp(-t / e.tau1_s)), rel=1e-9)


def test_resistance_rises_in_the_cold() -> None:
    """Arrhenius R0: 2-4x from 25 °C to -10 °C (Waag et al. 2013)."""
    f = circuit.resistance_factor(np.array([25.0, -10.0]), ElectricalParams())
    assert f[0] == pytest.approx(1.0)
    assert 2.0 <= f[1] <= 4.0


def test_1c_discharge_delivers_nameplate_capacity_and_energy() -> None:
    """Constant 1C at 25 °C from 100 % to the cut-off: capacity and energy within 2 % of nameplate."""
    p = PackParams()
    e = p.electrical
    packs = Packs(np.random.default_rng(0), 1, p)
    packs.cap0_ah[:] = e.group_capacity_ah
    packs.r_mfg[:] = 1.0
    packs.soc[:] = 1.0
    packs.temp_c[:] = 25.0
    dt, ah, wh = 1.0, 0.0, 0.0
    i_req = np.array([e.group_capacity_ah])
    for _ in range(5 * 3600):
        packs.prepare(dt)
        packs.advance(i_req, dt, ambient_c=np.array([25.0]), ua_factor=1.0)
        if packs.current_a[0] <= 0.0:
            break
        ah += packs.current_a[0] * dt / 3600.0
        wh += packs.current_a[0] * packs.voltage_v[0] * dt / 3600.0
    assert ah == pytest.approx(e.group_capacity_ah, rel=0.02)
    assert wh / 1000.0 == pytest.approx(e.nominal_energy_kwh, rel=0.02)
    assert wh / 1000.0 < ah * mean_ocv() * e.n_series / 1000.0  # losses are real


def test_power_request_is_met_exactly() -> None:
    """The closed-form current delivers exactly the requested power at the terminals."""
    packs = Packs(np.random.default_rng(1), 3, PackParams())
    packs.prepare(1.0)
    power = np.array([50e3, -30e3, 0.0])
    packs.advance(packs.current_for_power(power), 1.0, np.full(3, 20.0))
    assert packs.voltage_v * packs.current_a == pytest.approx(power, rel=1e-9, abs=1e-6)
