"""Mean aging rates of each battery: a prior from its usage and climate, refined online.

The live fleet needs each battery's *mean* stress to project its remaining life (RUL) and to pre-age
batteries that join the fleet at a random age. The prior averages the calendar rate over a year of
the vehicle's climate and takes the cycle rate at its typical DoD and C-rate; :meth:`MeanRates.update`
then follows the simulated stress with an exponential moving average over ``TAU_DAYS`` of operation
(the fleet's electrical time, which an accelerated demo does not speed up: the average covers days
of trips, parking and charging, not the present instant).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.physics import aging
from models.physics.ocv import ocv
from models.physics.pack import Packs, Stress
from models.physics.params import KELVIN
from models.physics.usage import SECONDS_PER_DAY, Usage

TAU_DAYS = 7.0
"""Averaging time of the online rate estimate (days of operation)."""


@dataclass
class MeanRates:
    """Mean aging rates per battery (arrays of shape (N,); units as in :mod:`models.physics.aging`).

    Attributes:
        alpha_q, alpha_r: Calendar rates (per day^0.75).
        beta_q, beta_r: Cycle rates (per sqrt(Ah_test), per Ah_test).
        ah_per_day: Throughput (Ah_test per day of life).
        test_cell_ah: Capacity of the aging-model test cell (Ah), to convert throughput to EFC.
    """

    alpha_q: np.ndarray
    alpha_r: np.ndarray
    beta_q: np.ndarray
    beta_r: np.ndarray
    ah_per_day: np.ndarray
    test_cell_ah: float

    @classmethod
    def prior(cls, packs: Packs, usage: Usage, t_s: float) -> MeanRates:
        """Rates expected from each vehicle's profile and climate (a year of 48 samples)."""
        p = packs.p
        t = t_s + np.arange(48)[:, None] * (365.25 / 48 * SECONDS_PER_DAY + 1800.0)
        temp_k = usage.ambient(t) + 3.0 + KELVIN
        aq, ar = aging.calendar_rates(ocv(0.65), temp_k, p.aging)
        drive_frac = usage.trip_s / (usage.trip_s + usage.park_s)
        amb_mean = usage.climate_mean_c
        kw = usage.drive_kw + p.usage.hvac_kw_per_k * np.abs(amb_mean - 21.0)
        e = p.electrical
        pack_ah_day = 2.0 * kw * 24.0 * drive_frac * 1000.0 / (e.v_nominal_cell * e.n_series)
        c_rate = kw * 1000.0 / (e.v_nominal_cell * e.n_series) / e.group_capacity_ah
        factor = aging.cycle_stress_factor(c_rate, amb_mean + 5.0 + KELVIN, p.aging)
        bq, br = aging.cycle_rates(ocv(0.6), usage.dod, factor, p.aging)
        cs, ks = packs.cal_scale, packs.cyc_scale
        return cls(aq.mean(axis=0) * cs, ar.mean(axis=0) * cs, bq * ks, br * ks,
                   pack_ah_day * p.aging.test_cell_ah / e.group_capacity_ah, p.aging.test_cell_ah)

    def pre_age(self, packs: Packs, life_days: np.ndarray) -> None:
        """Set the aging state of packs that have lived ``life_days`` (days) at the mean rates."""
        ah = self.ah_per_day * life_days
        packs.q_cal = self.alpha_q * life_days**0.75
        packs.r_cal = self.alpha_r * life_days**0.75
        packs.q_cyc = self.beta_q * np.sqrt(ah)
        packs.r_cyc = self.beta_r * ah
        packs.efc = ah / (2.0 * self.test_cell_ah)

    def update(self, st: Stress, ah: np.ndarray, days: float) -> None:
        """Fold one step's stress into the moving averages.

        Args:
            st: Stress rates of the step.
            ah: Throughput of the step (Ah_test).
            days: Operating time of the step (days, > 0).
        """
        w = min(days / TAU_DAYS, 1.0)
        self.alpha_q += w * (st.alpha_q - self.alpha_q)
        self.alpha_r += w * (st.alpha_r - self.alpha_r)
        self.ah_per_day += w * (ah / days - self.ah_per_day)
        wb = np.minimum(ah / (self.ah_per_day * TAU_DAYS + 1e-9), 1.0)
        self.beta_q += wb * (st.beta_q - self.beta_q)
        self.beta_r += wb * (st.beta_r - self.beta_r)

    def adopt(self, other: MeanRates, i: int) -> None:
        """Take battery ``i``'s rates from ``other`` (a new prior after its usage changed)."""
        for name in ("alpha_q", "alpha_r", "beta_q", "beta_r", "ah_per_day"):
            getattr(self, name)[i] = getattr(other, name)[i]

    def efc_per_day(self) -> np.ndarray:
        """Equivalent full cycles per day of life."""
        return self.ah_per_day / (2.0 * self.test_cell_ah)
