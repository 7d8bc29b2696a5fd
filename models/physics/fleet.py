"""The live fleet: N battery packs advanced together, one vectorised step at a time.

Two clocks: ``sim_time_s`` (Unix seconds, drives usage and climate) advances by ``dt_s`` per step;
each battery's *life* (days, drives aging and fault onsets) advances by ``aging_dt_s``, so a demo
can age batteries faster than it drives them. A step that ages more than it operates ages each pack
at its *mean* stress (:class:`MeanRates`, which follow the simulated stress over days of operation),
not at the present instant's: at ``evtwin up``'s default one day of aging per second of operation,
the present instant stretched over the day would age a driving pack as if it drove day and night
and a parked one as if it never moved (and project their RUL so: on 2,000 packs the true RUL's
median fell from 441 to 12 cycles in 30 such steps, 0 by 90, while SoH stayed at 92 %).
``time_offset_s`` (per battery, default 0) shifts each battery's local calendar (climate) from
``sim_time_s``; the dataset generator uses it. Batteries start at a random age (0-6 years); a pack that
reaches end of life (SoH 80 %) or whose fault has been active for ``repair_after_days`` is replaced
by a new one under the same id (new pack: SoH 100 %, new manufacturing spread and fault draw).

Readings (units): soc (%), soh (% BMS estimate), voltage (V, pack terminal), current (A, > 0
discharge), temperature (°C, hottest pack sensor), ambient_temperature (°C), charge_cycles (equivalent
full cycles, int), power_consumption (kW, > 0 discharge), cell_voltage_min / max (V), service_days
(days since the pack entered service: its life clock ``life_days``, 0 again when the pack is
replaced), mode (0 PARKED,
1 DRIVING, 2 CHARGING_AC, 3 CHARGING_DC), valid (False: link down, emit nothing).
Ground truth: true_soh (%), true_rul_cycles (EFC to SoH 80 % at the battery's own mean stress),
failure_within_horizon (bool, see ``FAILURE_HORIZON_DAYS``), fault (code into ``FAULT_NAMES``),
capacity_ah (Ah), r0_ohm (pack R0 at the present temperature, ohm).
"""

from __future__ import annotations

import numpy as np

from models.physics import faults, sensors
from models.physics.aging import days_to_loss
from models.physics.errors import PhysicsError
from models.physics.faults import FAULT_NAMES
from models.physics.pack import Packs, Stress
from models.physics.params import FAILURE_HORIZON_DAYS, PackParams
from models.physics.rates import MeanRates
from models.physics.usage import SECONDS_PER_DAY, TRIPS_PER_DAY, Usage

__all__ = ["FAULT_NAMES", "Fleet"]
MAX_INITIAL_AGE_DAYS = 6 * 365.0


class Fleet:
    """A fleet of EV battery packs with online usage, aging, faults and ground truth."""

    def __init__(self, n_batteries: int, seed: int, start_time_s: float = 0.0,
                 id_prefix: str = "BATTERY_", params: PackParams | None = None) -> None:
        """Create the fleet.

        Args:
            n_batteries: Number of packs (>= 1).
            seed: Seed of every random draw (same seed, same fleet and trajectory).
            start_time_s: Initial simulation time (Unix s, UTC).
            id_prefix: Prefix of the ids, e.g. ``BATTERY_0001``.
            params: Parameters (default: :class:`PackParams`).

        Raises:
            PhysicsError: If ``n_batteries`` < 1.
        """
        if n_batteries < 1:
            raise PhysicsError(f"n_batteries must be >= 1, got {n_batteries}")
        self.params = p = params or PackParams()
        n = self.n = n_batteries
        width = max(4, len(str(n)))
        self.battery_ids = [f"{id_prefix}{k:0{width}d}" for k in range(1, n + 1)]
        self._rng = np.random.default_rng(seed)
        self._sensor_rng = np.random.default_rng([seed, 1])
        self.sim_time_s = float(start_time_s)
        self.packs = Packs(self._rng, n, p)
        self.usage = Usage.new(self._rng, n, p.usage, p.electrical.nominal_energy_kwh)
        self.life_days = self._rng.uniform(0.0, MAX_INITIAL_AGE_DAYS, n)
        self.fault_code, onset = faults.draw_faults(self._rng, n, p.faults, min_days=1.0)
        self.fault_onset = self.life_days + onset
        self.time_offset_s = np.zeros(n)
        self.link_up = np.ones(n, bool)
        self._link_left = np.zeros(n)
        self.bms_bias = self._rng.normal(0.0, p.spread.bms_soh_bias_pct, n)
        self.imbalance_v = self._rng.gamma(4.0, p.spread.imbalance_mv_mean / 4.0 / 1000.0, n)
        self.rates = MeanRates.prior(self.packs, self.usage, self.sim_time_s)
        self.rates.pre_age(self.packs, self.life_days)
        self.packs.temp_c = self.usage.ambient(self.sim_time_s)
        e = p.electrical
        self._dc_kw = p.usage.dc_c_rate * e.group_capacity_ah * e.v_nominal_cell * e.n_series / 1000.0

    def active_faults(self) -> np.ndarray:
        """Code of the fault active in each battery now (int8, 0 = none)."""
        return faults.active_fault(self.fault_code, self.fault_onset, self.life_days)

    def step(self, dt_s: float, aging_dt_s: float | None = None) -> None:
        """Advance every battery by dt_s seconds of operation and aging_dt_s of aging.

        Args:
            dt_s: Electrical / thermal / usage step (s, > 0); any size is stable.
            aging_dt_s: Aging time of the step (s, >= 0; default dt_s). Charge throughput is scaled by
                ``aging_dt_s / dt_s`` so cycle and calendar aging speed up together.

        Raises:
            PhysicsError: On a non-positive dt_s or negative aging_dt_s.
        """
        if not dt_s > 0.0:
            raise PhysicsError(f"dt_s must be > 0, got {dt_s}")
        age_s = dt_s if aging_dt_s is None else float(aging_dt_s)
        if age_s < 0.0:
            raise PhysicsError(f"aging_dt_s must be >= 0, got {aging_dt_s}")
        p, packs, use = self.params, self.packs, self.usage
        active = self.active_faults()
        amb = use.ambient(self.sim_time_s + self.time_offset_s)
        power = use.power_request_w(self._rng, dt_s, packs.soc, packs.temp_c, amb, p.usage,
                                    self._dc_kw)
        packs.prepare(dt_s)
        leak = faults.short_conductance(active, self.fault_onset, self.life_days, p.faults)
        ua = np.where(active == faults.COOLING_FAILURE, 0.0, 1.0)
        packs.advance(packs.current_for_power(power), dt_s, amb, ua, leak)
        use.transition(self._rng, dt_s, packs.soc)
        faults.advance_dropout(self._rng, self.link_up, self._link_left, active, dt_s, p.faults)
        if age_s > 0.0:
            self._age(age_s, dt_s)
        self.sim_time_s += dt_s

    def _age(self, age_s: float, dt_s: float) -> None:
        """Fold this step's stress into the mean rates (over its ``dt_s`` of operation), apply
        ``age_s`` of aging (at this step's stress, or at the mean rates when the step ages more than
        it operates: see the module docstring), replace dead packs."""
        packs, r = self.packs, self.rates
        st = packs.stress(self.usage.dod)
        days = age_s / SECONDS_PER_DAY
        ah = packs.throughput_ah_test(packs.current_a, dt_s)
        r.update(st, ah, dt_s / SECONDS_PER_DAY)
        if age_s > dt_s:
            packs.age(Stress(r.alpha_q, r.alpha_r, r.beta_q, r.beta_r), days, r.ah_per_day * days)
        else:  # the step's own stress and throughput (scaled when it ages less than it operates)
            packs.age(st, days, ah * (age_s / dt_s))
        self.life_days += days
        since = self.life_days - self.fault_onset
        dead = (packs.soh_pct() <= self.params.aging.eol_soh) | (
            since >= self.params.faults.repair_after_days)
        idx = np.flatnonzero(dead)
        if idx.size:
            self._replace(idx)

    def _replace(self, idx: np.ndarray) -> None:
        """Install new packs in the vehicles ``idx`` (same ids, SoC and temperature kept)."""
        p, packs, k = self.params, self.packs, idx.size
        packs.cap0_ah[idx] = p.electrical.group_capacity_ah * self._rng.normal(1.0, p.spread.capacity_cv, k)
        packs.r_mfg[idx] = self._rng.lognormal(0.0, p.spread.resistance_cv, k)
        for arr in (packs.q_cal, packs.q_cyc, packs.r_cal, packs.r_cyc, packs.efc):
            arr[idx] = 0.0
        self.life_days[idx] = 0.0
        code, onset = faults.draw_faults(self._rng, k, p.faults)
        self.fault_code[idx], self.fault_onset[idx] = code, onset
        self.link_up[idx] = True

    def configure(self, i: int, *, usage_profile: int | None = None, climate: int | None = None,
                  max_soc: float | None = None, dc_share: float | None = None,
                  fault: int | None = None) -> None:
        """Apply an operator's desired state to battery ``i`` (the twin's commands); ``None`` keeps
        a value as it is.

        Args:
            i: Index of the battery.
            usage_profile: Driver profile, 0 private, 1 commuter, 2 commercial (daily distance,
                trips, speed and DC share of that profile, see ``UsageParams``).
            climate: Climate, 0 cold, 1 temperate, 2 hot (``UsageParams.climate_*``).
            max_soc: AC charge target, fraction (0.5-1).
            dc_share: Probability of DC fast charging when plugging in after a trip (0-1).
            fault: Fault code to make active now (``FAULT_NAMES``; 0 clears any fault).

        Raises:
            PhysicsError: On an index or value out of range.
        """
        if not 0 <= i < self.n:
            raise PhysicsError(f"battery index {i} out of range 0-{self.n - 1}")
        u, up = self.usage, self.params.usage
        if usage_profile is not None:
            if usage_profile not in (0, 1, 2):
                raise PhysicsError(f"usage_profile must be 0, 1 or 2, got {usage_profile}")
            speed = up.speed_kmh[usage_profile]
            km = up.daily_km[usage_profile]
            trips = float(TRIPS_PER_DAY[usage_profile])
            u.drive_kw[i] = up.kwh_per_km * speed
            u.trip_s[i] = km / speed / trips * 3600.0
            u.park_s[i] = (24.0 - km / speed) / trips * 0.85 * 3600.0
            u.dc_share[i] = up.dc_share[usage_profile]
        if climate is not None:
            if climate not in (0, 1, 2):
                raise PhysicsError(f"climate must be 0, 1 or 2, got {climate}")
            u.climate_mean_c[i] = up.climate_mean_c[climate]
            u.climate_season_c[i] = up.climate_season_c[climate]
            u.climate_daily_c[i] = up.climate_daily_c[climate]
        if max_soc is not None:
            if not 0.5 <= max_soc <= 1.0:
                raise PhysicsError(f"max_soc must be within 0.5-1, got {max_soc}")
            u.target_soc[i] = max_soc
        if dc_share is not None:
            if not 0.0 <= dc_share <= 1.0:
                raise PhysicsError(f"dc_share must be within 0-1, got {dc_share}")
            u.dc_share[i] = dc_share
        if fault is not None:
            if not 0 <= fault < len(FAULT_NAMES):
                raise PhysicsError(f"fault code must be within 0-{len(FAULT_NAMES) - 1}, got {fault}")
            self.fault_code[i] = fault
            self.fault_onset[i] = self.life_days[i] if fault else np.inf
        if usage_profile is not None or climate is not None:  # the mean stress starts from the new prior
            self.rates.adopt(MeanRates.prior(self.packs, self.usage, self.sim_time_s), i)

    def readings(self) -> dict[str, np.ndarray]:
        """Current telemetry, one array of length N per field (units in the module docstring)."""
        return sensors.readings(
            self._sensor_rng, self.packs, self.usage.mode, self.usage.ambient(self.sim_time_s + self.time_offset_s),
            self.active_faults(), self.fault_onset, self.life_days, self.bms_bias,
            self.imbalance_v, self.link_up, self.params)

    def ground_truth(self) -> dict[str, np.ndarray]:
        """True state of every battery (units in the module docstring; never a model input)."""
        packs, r = self.packs, self.rates
        eol_loss = 1.0 - self.params.aging.eol_soh / 100.0
        rul_days = days_to_loss(packs.q_cal, packs.q_cyc, r.alpha_q, r.beta_q, r.ah_per_day, eol_loss)
        fault_soon = self.fault_onset <= self.life_days + FAILURE_HORIZON_DAYS
        return {
            "true_soh": packs.soh_pct(),
            "true_rul_cycles": rul_days * r.efc_per_day(),
            "failure_within_horizon": (rul_days <= FAILURE_HORIZON_DAYS) | fault_soon,
            "fault": self.active_faults().astype(np.int64),
            "capacity_ah": packs.capacity_ah(),
            "r0_ohm": packs.r0_ohm(),
        }
