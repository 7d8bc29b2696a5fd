"""Vectorised state of N battery packs: electrical + thermal step, aging stress and aging update.

One :class:`Packs` object holds arrays of shape (N,). A step is split in two so that a power request
can be converted to current with the same step resistance: :meth:`Packs.prepare` (resistances, EMF),
then :meth:`Packs.advance` (current limits, SoC, RC voltages, heat, temperature). Aging is applied by
:meth:`Packs.age` from stress rates that :meth:`Packs.stress` computes for the present state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.physics import aging, circuit, thermal
from models.physics.ocv import ocv
from models.physics.params import KELVIN, PackParams


@dataclass
class Stress:
    """Aging rates at one instant (see :mod:`models.physics.aging` for units)."""

    alpha_q: np.ndarray  # capacity loss per day^0.75
    alpha_r: np.ndarray  # resistance gain per day^0.75
    beta_q: np.ndarray  # capacity loss per sqrt(Ah_test)
    beta_r: np.ndarray  # resistance gain per Ah_test


class Packs:
    """Arrays of N packs. SoC is a fraction here (0..1); temperatures in °C; per-group V, ohm, A.

    Attributes:
        soc: State of charge (fraction 0..1).
        v1, v2: RC voltages per group (V).
        temp_c: Pack mean temperature (°C).
        cap0_ah: Capacity when new (Ah), with manufacturing spread.
        r_mfg: Resistance manufacturing factor (dimensionless).
        cal_scale, cyc_scale: Per-pack multipliers of the calendar and cycle aging rates.
        q_cal, q_cyc: Calendar and cycle capacity loss (fraction of cap0).
        r_cal, r_cyc: Calendar and cycle resistance gain (fraction of the new resistance).
        efc: Equivalent full cycles (throughput / (2 Q_nominal)).
        current_a, voltage_v: Last pack current (A, > 0 discharge) and terminal voltage (V).
        heat_w: Heat generated in the last step (W), of which leak_w in an internal short (W).
    """

    def __init__(self, rng: np.random.Generator, n: int, params: PackParams) -> None:
        self.p = params
        e, s = params.electrical, params.spread
        self.n = n
        self.soc = rng.uniform(0.4, 0.9, n)
        self.v1 = np.zeros(n)
        self.v2 = np.zeros(n)
        self.temp_c = np.full(n, 20.0)
        self.cap0_ah = e.group_capacity_ah * rng.normal(1.0, s.capacity_cv, n)
        self.r_mfg = rng.lognormal(0.0, s.resistance_cv, n)
        self.aging_scale = rng.lognormal(-0.5 * s.aging_sigma**2, s.aging_sigma, n)
        self.cal_scale = s.calendar_scale * self.aging_scale
        self.cyc_scale = s.cycle_scale * self.aging_scale
        self.q_cal, self.q_cyc = np.zeros(n), np.zeros(n)
        self.r_cal, self.r_cyc = np.zeros(n), np.zeros(n)
        self.efc = np.zeros(n)
        self.current_a, self.voltage_v = np.zeros(n), np.full(n, e.v_nominal_cell * e.n_series)
        self.heat_w, self.leak_w = np.zeros(n), np.zeros(n)
        self._decay: dict[float, tuple[float, float]] = {}
        self._ocv = ocv(self.soc)

    # --- derived quantities -------------------------------------------------------------------
    def capacity_ah(self) -> np.ndarray:
        """Present capacity (Ah)."""
        return self.cap0_ah * (1.0 - self.q_cal - self.q_cyc)

    def soh_pct(self) -> np.ndarray:
        """True state of health (%): present capacity / capacity when new."""
        return 100.0 * (1.0 - self.q_cal - self.q_cyc)

    def r0_ohm(self, temp_c: np.ndarray | None = None) -> np.ndarray:
        """Pack R0 (ohm) at ``temp_c`` (default: present temperature), with spread and aging."""
        e = self.p.electrical
        t = self.temp_c if temp_c is None else temp_c
        rf = circuit.resistance_factor(t, e) * self.r_mfg * (1.0 + self.r_cal + self.r_cyc)
        return rf * (e.r0_cell_ohm / e.n_parallel * e.n_series)

    # --- electrical + thermal -----------------------------------------------------------------
    def prepare(self, dt_s: float) -> None:
        """Compute the step resistances and EMF behind them for a step of dt_s seconds."""
        e = self.p.electrical
        if dt_s not in self._decay:
            self._decay[dt_s] = circuit.rc_decay(dt_s, e)
        a1, a2 = self._decay[dt_s]
        rf = circuit.resistance_factor(self.temp_c, e) * self.r_mfg * (1.0 + self.r_cal + self.r_cyc)
        rf *= 1.0 / e.n_parallel
        self._r0, self._r1, self._r2 = rf * e.r0_cell_ohm, rf * e.r1_cell_ohm, rf * e.r2_cell_ohm
        self._ocv = ocv(self.soc)
        self._emf = self._ocv - a1 * self.v1 - a2 * self.v2
        self._reff = self._r0 + self._r1 * (1.0 - a1) + self._r2 * (1.0 - a2)

    def current_for_power(self, power_w: np.ndarray) -> np.ndarray:
        """Pack current (A) delivering ``power_w`` (W, > 0 discharge) this step; call after prepare."""
        return circuit.current_for_power(power_w / self.p.electrical.n_series, self._emf, self._reff)

    def advance(self, current_a: np.ndarray, dt_s: float, ambient_c: np.ndarray,
                ua_factor: np.ndarray | float = 1.0, leak_s: np.ndarray | float = 0.0) -> None:
        """Advance SoC, RC voltages and temperature by dt_s seconds (call after :meth:`prepare`).

        Args:
            current_a: Requested pack current (A, > 0 discharge); clamped to the voltage and SoC limits.
            dt_s: Step (s).
            ambient_c: Ambient temperature (°C).
            ua_factor: Cooling health (1 nominal, 0 failed).
            leak_s: Internal-short conductance (S, pack level); its current discharges the cells
                without passing the current sensor and its heat adds to the pack.
        """
        e = self.p.electrical
        i = circuit.limit_current(current_a, self._emf, self._reff, e.v_cutoff_cell, e.v_max_cell)
        i = np.where((self.soc <= 0.0) & (i > 0.0) | (self.soc >= 1.0) & (i < 0.0), 0.0, i)
        v_group = self._emf - self._reff * i
        leak_a = leak_s * (v_group * e.n_series)
        self.soc -= (i + leak_a) * (dt_s / 3600.0) / self.capacity_ah()
        np.clip(self.soc, 0.0, 1.0, out=self.soc)
        a1, a2 = self._decay[dt_s]
        circuit.rc_advance(self.v1, self._r1, a1, i)
        circuit.rc_advance(self.v2, self._r2, a2, i)
        joule = i * i * self._r0 + self.v1 * self.v1 / self._r1 + self.v2 * self.v2 / self._r2
        self.leak_w = leak_a * v_group * e.n_series
        self.heat_w = joule * e.n_series + self.leak_w
        self.temp_c = thermal.thermal_step(self.temp_c, self.heat_w, ambient_c, ua_factor, dt_s,
                                           self.p.thermal)
        self.current_a = i
        self.voltage_v = v_group * e.n_series

    def cell_voltages(self, weak_frac: np.ndarray, weak_r: np.ndarray,
                      imbalance_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest group voltage (V) after the last step.

        The spread at rest is ``imbalance_v`` and grows with the polarisation (5 % of it). A weak group
        (capacity fraction ``weak_frac``, resistance factor ``weak_r``) is top-balanced: its SoC is
        ``1 - (1 - SoC) / weak_frac``, so it sags most at low SoC and under load.
        """
        v_mean = self.voltage_v / self.p.electrical.n_series
        polar = self._ocv - v_mean
        half = 0.5 * imbalance_v + 0.05 * np.abs(polar)
        soc_w = np.maximum(1.0 - (1.0 - self.soc) / weak_frac, 0.0)
        v_weak = ocv(soc_w) - polar * weak_r
        return np.minimum(v_mean - half, v_weak), v_mean + half

    # --- aging --------------------------------------------------------------------------------
    def stress(self, dod: np.ndarray) -> Stress:
        """Aging rates at the present state (call after :meth:`advance`).

        Args:
            dod: Typical depth of discharge of the battery's cycles (fraction).
        """
        a = self.p.aging
        temp_k = self.temp_c + KELVIN
        aq, ar = aging.calendar_rates(self._ocv, temp_k, a)
        c_rate = np.abs(self.current_a) / self.p.electrical.group_capacity_ah
        bq, br = aging.cycle_rates(self._ocv, dod, aging.cycle_stress_factor(c_rate, temp_k, a), a)
        return Stress(aq * self.cal_scale, ar * self.cal_scale, bq * self.cyc_scale,
                      br * self.cyc_scale)

    def throughput_ah_test(self, current_a: np.ndarray, seconds: float | np.ndarray) -> np.ndarray:
        """Charge throughput over ``seconds`` at ``current_a``, scaled to the Schmalstieg test cell (Ah)."""
        e, a = self.p.electrical, self.p.aging
        return np.abs(current_a) * (seconds / 3600.0) * (a.test_cell_ah / e.group_capacity_ah)

    def age(self, st: Stress, days: np.ndarray | float, ah_test: np.ndarray) -> None:
        """Apply aging for ``days`` of calendar time and ``ah_test`` of throughput (virtual time).

        Args:
            st: Stress rates (mean over the interval).
            days: Calendar time (days).
            ah_test: Throughput scaled to the test cell (Ah); also advances the EFC counter.
        """
        self.q_cal = aging.power_law_advance(self.q_cal, st.alpha_q, days, self.p.aging.qcal_p)
        self.r_cal = aging.power_law_advance(self.r_cal, st.alpha_r, days, self.p.aging.rcal_p)
        self.q_cyc = aging.power_law_advance(self.q_cyc, st.beta_q, ah_test, self.p.aging.qcyc_p)
        self.r_cyc = self.r_cyc + st.beta_r * ah_test
        self.efc = self.efc + ah_test / (2.0 * self.p.aging.test_cell_ah)
