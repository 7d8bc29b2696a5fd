"""Parameters of the pack model, as data, each with its source.

Every dataclass is frozen; build a variant with ``dataclasses.replace``. Values marked *assumption* are
engineering choices of this project (typical of the literature, not fitted to one dataset).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GAS_CONSTANT = 8.314462618
"""Universal gas constant R (J/(mol K))."""
KELVIN = 273.15
"""Offset from °C to K."""


@dataclass(frozen=True)
class ElectricalParams:
    """Thevenin ECM (R0 + two RC pairs) of one cell, and the pack topology.

    The pack is ``n_series`` groups of ``n_parallel`` cells. Group capacity = cell capacity x n_parallel;
    group resistances = cell resistances / n_parallel. Nominal: 96s3p x 72 Ah = 216 Ah, 350.4 V, 75.7 kWh.

    Sources: topology and cell size are an *assumption* typical of 75 kWh NMC packs (96s, 350-400 V).
    2-RC structure after Hu, Li & Peng, J. Power Sources 198 (2012) 359-367 (best trade-off for NMC);
    magnitudes (*assumption*) typical of 60-80 Ah NMC pouch cells, chosen so that the mean terminal
    voltage of a 1C discharge at 25 °C equals ``v_nominal_cell``. Arrhenius activation of R0: Waag,
    Käbitz & Sauer, Appl. Energy 102 (2013) 885-897 report a 2-4x rise of R from 25 °C to -10 °C;
    22 kJ/mol gives 3.3x.
    """

    n_series: int = 96
    n_parallel: int = 3
    cell_capacity_ah: float = 72.0  # Ah
    v_nominal_cell: float = 3.65  # V, mean terminal voltage at 1C, 25 °C (datasheet convention)
    v_cutoff_cell: float = 3.0  # V, discharge cut-off per cell
    v_max_cell: float = 4.15  # V, charge limit (CV level) per cell
    r0_cell_ohm: float = 0.75e-3  # ohm at 25 °C, new
    r1_cell_ohm: float = 0.25e-3  # ohm
    tau1_s: float = 10.0  # s, fast RC (charge transfer)
    r2_cell_ohm: float = 0.35e-3  # ohm
    tau2_s: float = 300.0  # s, slow RC (diffusion)
    r_activation_j_mol: float = 22_000.0  # J/mol, Arrhenius activation of R0, R1, R2
    t_ref_c: float = 25.0  # °C, reference temperature of the resistances

    @property
    def group_capacity_ah(self) -> float:
        """Capacity of one parallel group = pack capacity (Ah)."""
        return self.cell_capacity_ah * self.n_parallel

    @property
    def nominal_energy_kwh(self) -> float:
        """Nameplate energy (kWh) = capacity x nominal pack voltage."""
        return self.group_capacity_ah * self.v_nominal_cell * self.n_series / 1000.0


@dataclass(frozen=True)
class ThermalParams:
    """Lumped pack heat balance.

    ``C dT/dt = Q_gen - hA (T - T_amb) - UA_cool (T - T_coolant) [T > T_set]``.

    Sources: lumped approach of Pesaran, J. Power Sources 110 (2002) 377-382. Mass 450 kg and effective
    heat capacity 1000 J/(kg K) are typical of 75 kWh packs (*assumption*); hA, UA and set points are
    *assumptions* of a liquid-cooled pack (passive time constant ~8 h, cooling ~15x the passive path).
    """

    mass_kg: float = 450.0  # kg
    cp_j_kg_k: float = 1000.0  # J/(kg K)
    ha_ambient_w_k: float = 15.0  # W/K, passive convection to ambient
    ua_cooling_w_k: float = 250.0  # W/K, liquid cooling loop when active
    t_coolant_c: float = 20.0  # °C, chiller outlet
    t_cooling_on_c: float = 30.0  # °C, cooling set point (on above)
    hotspot_k_per_w: float = 0.0015  # K/W, max-sensor rise above the mean per W generated

    @property
    def heat_capacity_j_k(self) -> float:
        """Pack heat capacity C (J/K)."""
        return self.mass_kg * self.cp_j_kg_k


@dataclass(frozen=True)
class AgingParams:
    """Capacity fade and resistance growth (Schmalstieg et al. 2014, NMC/graphite).

    Schmalstieg, Käbitz, Ecker & Sauer, J. Power Sources 257 (2014) 325-334, as implemented in NREL
    BLAST-Lite (``nmc111_gr_Sanyo2Ah_2014``): calendar ``q = alpha(V, T) t^0.75`` (t in days) with
    ``alpha = (a_v V + b_v) 1e6 exp(c_t / T)``; cycle ``q = beta(V_rms, DoD) sqrt(Ah)`` with Ah the
    throughput of the 2.15 Ah test cell (we scale throughput to it per equivalent full cycle). Schmalstieg
    measured cycling at 35 °C / 1C only: the temperature and C-rate factors follow the form of Wang et al.,
    J. Power Sources 196 (2011) 3942-3948 (Ea = 31.7 kJ/mol, +370.3 J/mol per C), an *assumption* for
    NMC. ``scale`` multiplies all rates; the fleet calibrates it (see ``SpreadParams``).
    """

    qcal_a_v: float = 7.543  # 1/V
    qcal_b: float = -23.75  # -
    qcal_c_k: float = -6976.0  # K
    qcal_p: float = 0.75  # time exponent
    qcyc_a: float = 7.348e-3  # 1/V^2
    qcyc_b_v: float = 3.667  # V
    qcyc_c: float = 7.6e-4  # -
    qcyc_d_dod: float = 4.081e-3  # per unit DoD
    qcyc_p: float = 0.5  # throughput exponent
    rcal_a_v: float = 5.270  # 1/V
    rcal_b: float = -16.32
    rcal_c_k: float = -5986.0  # K
    rcal_p: float = 0.75
    rcyc_a: float = 2.153e-4
    rcyc_b_v: float = 3.725  # V
    rcyc_c: float = -1.521e-5
    rcyc_d_dod: float = 2.798e-4
    test_cell_ah: float = 2.15  # Ah, Sanyo UR18650E used by Schmalstieg
    cyc_ea_j_mol: float = 31_700.0  # J/mol (Wang et al. 2011)
    cyc_crate_j_mol: float = 370.3  # J/mol per C-rate (Wang et al. 2011)
    cyc_t_ref_c: float = 35.0  # °C, Schmalstieg cycling temperature
    eol_soh: float = 80.0  # %, end of life
    scale: float = 1.0  # multiplier on every rate


@dataclass(frozen=True)
class SpreadParams:
    """Per-battery manufacturing variation and the fleet's aging calibration.

    Capacity CV ~1 % and resistance CV ~4 %: Schuster et al., J. Power Sources 297 (2015) 242-251
    (cell-to-cell variation of new NMC cells). Aging-rate spread (lognormal sigma 0.15): Baumhöfer et al.,
    J. Power Sources 247 (2014) 332-338 (production-caused spread of aging trends). ``calendar_scale`` and
    ``cycle_scale``: *assumption* calibrating Schmalstieg's 2011 consumer cell to automotive cells: the
    cycle rate is scaled so that 80 % DoD at 25 °C, 1C reaches SoH 80 % after ~2000 EFC (typical of
    automotive NMC data sheets), the calendar rate so that the fleet loses ~2 %/year on average
    (Geotab 2020 telematics study of 6,300 EVs: 2.3 %/year).
    BMS SoH error (bias sigma 0.8 % + noise 0.4 %): *assumption*, typical of on-board estimators (~1 %).
    """

    capacity_cv: float = 0.01
    resistance_cv: float = 0.04
    aging_sigma: float = 0.15
    calendar_scale: float = 1.5
    cycle_scale: float = 0.8
    imbalance_mv_mean: float = 8.0  # mV, typical max-min cell spread at rest
    bms_soh_bias_pct: float = 0.8  # % SoH (1 sigma), per battery
    bms_soh_noise_pct: float = 0.4  # % SoH (1 sigma), per reading


@dataclass(frozen=True)
class UsageParams:
    """Driver profiles, charging and climate (all *assumptions* unless noted).

    Consumption 0.17 kWh/km at the wheel plus HVAC ~0.15 kW per K away from 21 °C: typical of 2020s
    EVs (US DOE fueleconomy.gov ratings ~0.15-0.20 kWh/km). Profile shares and daily distances:
    private 35 km, commuter 80 km, commercial 220 km. AC charging 11 kW, DC fast 1.5C (~125 kW).
    Climate means (annual mean °C, seasonal and daily half-amplitudes): cold, temperate, hot.
    """

    kwh_per_km: float = 0.17
    hvac_kw_per_k: float = 0.15
    profile_share: tuple[float, float, float] = (0.5, 0.3, 0.2)
    daily_km: tuple[float, float, float] = (35.0, 80.0, 220.0)
    speed_kmh: tuple[float, float, float] = (40.0, 50.0, 55.0)
    dc_share: tuple[float, float, float] = (0.05, 0.15, 0.6)
    ac_kw: float = 11.0
    dc_c_rate: float = 1.5
    climate_mean_c: tuple[float, float, float] = (10.0, 15.0, 22.0)
    climate_season_c: tuple[float, float, float] = (10.0, 8.0, 6.0)
    climate_daily_c: tuple[float, float, float] = (4.0, 5.0, 6.0)
    climate_share: tuple[float, float, float] = (0.25, 0.5, 0.25)
    power_noise_kw: float = 18.0  # kW, sigma of the drive-power fluctuation (accel/regen)
    power_corr_s: float = 20.0  # s, correlation time of the drive-power fluctuation
    regen_max_kw: float = 60.0  # kW


@dataclass(frozen=True)
class FaultParams:
    """Fault incidence and severity (*assumptions*, chosen to be detectable but realistic).

    Internal short: leakage resistance falls from ``short_r_start_ohm`` to ``short_r_end_ohm`` (pack
    level) over ``short_ramp_days``; its heat is localised (``short_hotspot_k_per_w``). Cooling failure:
    UA_cool -> 0. Weak cell: one group's capacity fraction falls to ``weak_min_frac`` over
    ``weak_ramp_days``. Sensor drift: +``drift_c_per_day`` on the max-temperature sensor. Dropout: the
    battery stops reporting for exponential stretches (mean ``dropout_off_s``) between stretches of
    ``dropout_on_s``.
    """

    incidence: float = 0.2  # probability that a battery gets one fault during its life
    onset_max_days: float = 3650.0  # days, onsets uniform in [30, this] of battery life
    weights: tuple[float, ...] = (0.2, 0.2, 0.25, 0.2, 0.15)  # short, cooling, weak, drift, dropout
    short_r_start_ohm: float = 5000.0
    short_r_end_ohm: float = 200.0
    short_ramp_days: float = 30.0
    short_hotspot_k_per_w: float = 0.02
    weak_min_frac: float = 0.7
    weak_r_factor: float = 1.8
    weak_ramp_days: float = 60.0
    drift_c_per_day: float = 0.3
    drift_max_c: float = 15.0
    dropout_on_s: float = 1800.0
    dropout_off_s: float = 600.0
    repair_after_days: float = 60.0  # live fleet: pack replaced this long after onset


@dataclass(frozen=True)
class PackParams:
    """All parameters of one fleet (one object passed down to every physics function)."""

    electrical: ElectricalParams = field(default_factory=ElectricalParams)
    thermal: ThermalParams = field(default_factory=ThermalParams)
    aging: AgingParams = field(default_factory=AgingParams)
    spread: SpreadParams = field(default_factory=SpreadParams)
    usage: UsageParams = field(default_factory=UsageParams)
    faults: FaultParams = field(default_factory=FaultParams)


FAILURE_HORIZON_DAYS = 30.0
"""Horizon of the ``failure_within_horizon`` label (days of battery life): True when the battery reaches
end of life (SoH 80 %) or a fault is active or starts within this many days."""
