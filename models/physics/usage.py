"""Per-vehicle usage: a vectorised drive / park / charge state machine, and the climate.

Each battery has a driver profile (private, commuter, commercial: daily km, trips per day, speed,
plug-in threshold, share of DC fast charging) and a climate (annual mean, seasonal and daily
half-amplitudes). Modes last random (lognormal) durations; charging ends at the driver's target SoC.
The state machine runs online, one step for every battery per call, so a fleet can run forever.
Power sign: > 0 discharge (W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.physics.params import UsageParams
from schemas.fields import OPERATING_MODES

PARKED, DRIVING, CHARGING_AC, CHARGING_DC = 0, 1, 2, 3
MODE_NAMES: tuple[str, ...] = OPERATING_MODES[1:]
"""Mode code -> name: the telemetry schema's ``OperatingMode`` without ``UNKNOWN`` (code 0 there)."""
assert MODE_NAMES[PARKED] == "PARKED" and MODE_NAMES[CHARGING_DC] == "CHARGING_DC", MODE_NAMES
TRIPS_PER_DAY = np.array([2.5, 3.0, 6.0])
"""Trips per day of the private, commuter and commercial profiles (*assumption*)."""
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_YEAR = 365.25 * SECONDS_PER_DAY


def ambient_c(t_s: np.ndarray | float, mean_c: np.ndarray, season_c: np.ndarray,
              daily_c: np.ndarray) -> np.ndarray:
    """Ambient temperature (°C) at Unix time t_s (s): coldest mid-January and at 03:00 (UTC)."""
    year_phase = 2.0 * np.pi * ((np.asarray(t_s) - 15.0 * SECONDS_PER_DAY) / SECONDS_PER_YEAR)
    day_phase = 2.0 * np.pi * ((np.asarray(t_s) - 3 * 3600.0) / SECONDS_PER_DAY)
    return mean_c - season_c * np.cos(year_phase) - daily_c * np.cos(day_phase)


@dataclass
class Usage:
    """State and constants of the usage state machine, arrays of shape (N,).

    Attributes:
        mode: Mode code (int8, see :data:`MODE_NAMES`).
        left_s: Seconds left in the present mode (s).
        fluct_kw: Drive-power fluctuation, an Ornstein-Uhlenbeck process (kW).
        drive_kw: Mean traction power while driving (kW).
        trip_s / park_s: Mean trip and parking durations (s).
        plug_soc / target_soc: SoC (fraction) below which the driver plugs in, and AC charge target.
        dc_share: Probability of choosing DC fast charging when plugging in after a trip.
        soc_start: SoC at the start of the present charge (fraction).
        dod: Typical depth of discharge, the SoC swing of recent charges (fraction).
        climate_mean_c / climate_season_c / climate_daily_c: Climate of the vehicle (°C).
    """

    mode: np.ndarray
    left_s: np.ndarray
    fluct_kw: np.ndarray
    drive_kw: np.ndarray
    trip_s: np.ndarray
    park_s: np.ndarray
    plug_soc: np.ndarray
    target_soc: np.ndarray
    dc_share: np.ndarray
    soc_start: np.ndarray
    dod: np.ndarray
    climate_mean_c: np.ndarray
    climate_season_c: np.ndarray
    climate_daily_c: np.ndarray

    @classmethod
    def new(cls, rng: np.random.Generator, n: int, p: UsageParams, pack_kwh: float) -> Usage:
        """Draw profiles and climates for n vehicles, all parked with a random time left."""
        prof = rng.choice(3, size=n, p=np.asarray(p.profile_share))
        clim = rng.choice(3, size=n, p=np.asarray(p.climate_share))
        km = np.asarray(p.daily_km)[prof] * rng.lognormal(0.0, 0.3, n)
        speed = np.asarray(p.speed_kmh)[prof]
        drive_h = km / speed
        trips = TRIPS_PER_DAY[prof]
        park_s = (24.0 - drive_h) / trips * 0.85 * 3600.0
        return cls(
            mode=np.zeros(n, np.int8), left_s=rng.exponential(1.0, n) * park_s,
            fluct_kw=np.zeros(n), drive_kw=p.kwh_per_km * speed,
            trip_s=drive_h / trips * 3600.0, park_s=park_s,
            plug_soc=rng.uniform(0.25, 0.5, n), target_soc=rng.uniform(0.8, 1.0, n),
            dc_share=np.asarray(p.dc_share)[prof], soc_start=np.zeros(n),
            dod=np.clip(km * p.kwh_per_km / pack_kwh, 0.05, 0.9),
            climate_mean_c=np.asarray(p.climate_mean_c)[clim] + rng.normal(0.0, 2.0, n),
            climate_season_c=np.asarray(p.climate_season_c)[clim],
            climate_daily_c=np.asarray(p.climate_daily_c)[clim],
        )

    def ambient(self, t_s: np.ndarray | float) -> np.ndarray:
        """Ambient temperature of every vehicle at time t_s (°C)."""
        return ambient_c(t_s, self.climate_mean_c, self.climate_season_c, self.climate_daily_c)

    def power_request_w(
        self, rng: np.random.Generator, dt_s: float, soc: np.ndarray, temp_c: np.ndarray,
        amb_c: np.ndarray, p: UsageParams, dc_kw: float,
    ) -> np.ndarray:
        """Pack power the vehicle asks for this step (W, > 0 discharge, < 0 regen or charge).

        Args:
            rng: Random generator.
            dt_s: Step (s).
            soc: Pack SoC (fraction).
            temp_c: Pack temperature (°C); DC power is derated below 20 °C.
            amb_c: Ambient temperature (°C), drives the HVAC load while driving.
            p: Usage parameters.
            dc_kw: Full DC fast-charge power (kW).
        """
        a = np.exp(-dt_s / p.power_corr_s)
        self.fluct_kw *= a
        self.fluct_kw += rng.standard_normal(soc.shape[0]) * (p.power_noise_kw * np.sqrt(1.0 - a * a))
        drive = self.drive_kw + self.fluct_kw + p.hvac_kw_per_k * np.abs(amb_c - 21.0)
        drive = np.clip(drive, np.where(soc > 0.95, 0.0, -p.regen_max_kw), 150.0)
        dc = -dc_kw * np.clip(temp_c / 20.0, 0.2, 1.0)
        kw = np.select([self.mode == DRIVING, self.mode == CHARGING_AC, self.mode == CHARGING_DC],
                       [drive, np.full_like(soc, -p.ac_kw), dc], 0.0)
        return kw * 1000.0

    def transition(self, rng: np.random.Generator, dt_s: float, soc: np.ndarray) -> None:
        """Count down the present modes and switch the batteries whose mode ended (in place).

        Args:
            rng: Random generator.
            dt_s: Step (s).
            soc: Pack SoC (fraction).
        """
        self.left_s -= dt_s
        mode = self.mode
        end = self.left_s <= 0.0
        end |= (mode == CHARGING_AC) & (soc >= self.target_soc)
        end |= (mode == CHARGING_DC) & (soc >= 0.8)
        end |= (mode == DRIVING) & (soc < 0.07)
        idx = np.flatnonzero(end)
        if idx.size:
            self._switch(rng, idx, soc[idx])

    def _switch(self, rng: np.random.Generator, idx: np.ndarray, soc: np.ndarray) -> None:
        """Choose the next mode and its duration for the batteries ``idx``."""
        old = self.mode[idx]
        r = rng.random(idx.size)
        need = (old == DRIVING) & (soc < self.plug_soc[idx]) | (old == PARKED) & (soc < 0.1)
        use_dc = need & (old == DRIVING) & ((r < self.dc_share[idx]) | (soc < 0.12))
        new = np.where(old >= CHARGING_AC, PARKED, np.where(old == PARKED, DRIVING, PARKED))
        new = np.where(need, np.where(use_dc, CHARGING_DC, CHARGING_AC), new).astype(np.int8)
        was_charging = old >= CHARGING_AC
        swing = np.clip(soc - self.soc_start[idx], 0.02, 1.0)
        self.dod[idx] = np.where(was_charging, 0.7 * self.dod[idx] + 0.3 * swing, self.dod[idx])
        self.soc_start[idx] = np.where(new >= CHARGING_AC, soc, self.soc_start[idx])
        mean_s = np.select([new == DRIVING, new == PARKED, new == CHARGING_AC],
                           [self.trip_s[idx], self.park_s[idx], np.full(idx.size, 14 * 3600.0)],
                           1.5 * 3600.0)
        self.left_s[idx] = mean_s * rng.lognormal(-0.32, 0.8, idx.size)  # mean 1
        self.mode[idx] = new
