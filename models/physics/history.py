"""Run-to-failure histories of new batteries, with a multi-rate scheme.

Simulating ten years at 1 s is out of reach, so each iteration of the loop (vectorised over batteries):

1. simulates one *representative day* of the battery's duty with the full ECM, thermal, usage and
   fault models at ``day_dt_s`` (exact discretisation, stable at any step), on that battery's own
   calendar date, accumulating the aging stress (time-mean calendar rates, throughput-weighted cycle
   rates, throughput) and sampling ``samples_per_day`` readings at random times of the day;
2. advances aging by a whole number of days (each battery its own: about ``loss_per_iteration`` of
   capacity per iteration, within [min_interval_days, max_interval_days]) at that day's mean stress,
   with the virtual-time update.

A battery stops at end of life (SoH 80 %); its EOL day and EFC are interpolated within the last
interval, which gives the exact post-hoc labels (RUL, failure_within_horizon).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.physics import faults
from models.physics.aging import days_to_loss, power_law_advance
from models.physics.fleet import Fleet
from models.physics.pack import Stress
from models.physics.params import PackParams
from models.physics.usage import SECONDS_PER_DAY


@dataclass(frozen=True)
class HistoryConfig:
    """Settings of the multi-rate scheme (s, days, fractions)."""

    day_dt_s: float = 180.0
    samples_per_day: int = 4
    loss_per_iteration: float = 0.001
    min_interval_days: int = 1
    max_interval_days: int = 30  # <= the label horizon, so the last day sampled is within it
    max_years: float = 40.0
    start_time_s: float = 1_577_836_800.0  # 2020-01-01T00:00:00Z


class _DayAccumulator:
    """Sums of one representative day's stress (see :func:`simulate_histories`)."""

    def __init__(self, n: int) -> None:
        self.aq, self.ar, self.bq, self.br, self.ah = (np.zeros(n) for _ in range(5))
        self.seconds = 0.0

    def add(self, st: Stress, ah: np.ndarray, dt_s: float) -> None:
        """Add one step: calendar rates weighted by time (s), cycle rates by throughput (Ah_test)."""
        self.aq += st.alpha_q * dt_s
        self.ar += st.alpha_r * dt_s
        self.bq += st.beta_q * ah
        self.br += st.beta_r * ah
        self.ah += ah
        self.seconds += dt_s

    def mean(self, fallback: Stress) -> tuple[Stress, np.ndarray]:
        """Mean stress and throughput per day (Ah_test/day)."""
        ah = np.maximum(self.ah, 1e-12)
        st = Stress(self.aq / self.seconds, self.ar / self.seconds,
                    np.where(self.ah > 0, self.bq / ah, fallback.beta_q),
                    np.where(self.ah > 0, self.br / ah, fallback.beta_r))
        return st, self.ah * (SECONDS_PER_DAY / self.seconds)


def new_fleet(n: int, seed: int, params: PackParams | None, cfg: HistoryConfig) -> Fleet:
    """A fleet of *new* packs (SoH 100 %, life 0) with faults planned from day 30 of life."""
    fleet = Fleet(n, seed=seed, start_time_s=cfg.start_time_s, params=params)
    packs = fleet.packs
    for arr in (packs.q_cal, packs.q_cyc, packs.r_cal, packs.r_cyc, packs.efc, fleet.life_days):
        arr[:] = 0.0
    code, onset = faults.draw_faults(np.random.default_rng([seed, 2]), n, fleet.params.faults)
    fleet.fault_code, fleet.fault_onset = code, onset
    return fleet


def _interval_days(fleet: Fleet, st: Stress, ah_day: np.ndarray, cfg: HistoryConfig) -> np.ndarray:
    """Whole days to advance so that each battery loses about ``cfg.loss_per_iteration``."""
    p, packs = fleet.params.aging, fleet.packs
    loss1 = (power_law_advance(packs.q_cal, st.alpha_q, 1.0, p.qcal_p) - packs.q_cal
             + power_law_advance(packs.q_cyc, st.beta_q, ah_day, p.qcyc_p) - packs.q_cyc)
    days = cfg.loss_per_iteration / np.maximum(loss1, 1e-12)
    return np.clip(np.floor(days), cfg.min_interval_days, cfg.max_interval_days)


def _sample(fleet: Fleet, t_s: np.ndarray, out: dict[str, list[np.ndarray]], keep: np.ndarray) -> None:
    """Append the present readings and truth of the batteries ``keep`` (bool) to ``out``."""
    rd = fleet.readings()
    mask = keep & rd["valid"]
    active = fleet.active_faults()
    rows = dict(rd, timestamp_s=t_s, battery=np.arange(fleet.n), true_soh=fleet.packs.soh_pct(),
                efc=fleet.packs.efc.copy(), life_days=fleet.life_days.copy(), fault=active,
                fault_onset_days=np.where(active > 0, fleet.fault_onset, np.nan))
    for key, arr in rows.items():
        out.setdefault(key, []).append(np.asarray(arr)[mask])


def _representative_day(fleet: Fleet, cfg: HistoryConfig, rng: np.random.Generator,
                        out: dict[str, list[np.ndarray]], alive: np.ndarray) -> _DayAccumulator:
    """Simulate one day of every battery at its own date; sample readings; accumulate stress."""
    steps = round(SECONDS_PER_DAY / cfg.day_dt_s)
    day0 = cfg.start_time_s + np.floor(fleet.life_days) * SECONDS_PER_DAY
    fleet.time_offset_s = day0 - fleet.sim_time_s
    picks = set(np.sort(rng.choice(steps, cfg.samples_per_day, replace=False)).tolist())
    acc = _DayAccumulator(fleet.n)
    for k in range(steps):
        fleet.step(cfg.day_dt_s, aging_dt_s=0.0)
        acc.add(fleet.packs.stress(fleet.usage.dod),
                fleet.packs.throughput_ah_test(fleet.packs.current_a, cfg.day_dt_s), cfg.day_dt_s)
        if k in picks:
            _sample(fleet, day0 + (k + 1) * cfg.day_dt_s, out, alive)
    return acc


def simulate_histories(
    n: int, seed: int, params: PackParams | None = None, cfg: HistoryConfig | None = None,
    on_iteration: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Fleet]:
    """Simulate n new batteries to end of life.

    Args:
        n: Number of batteries.
        seed: Seed (same seed, same histories).
        params: Physics parameters.
        cfg: Multi-rate settings.
        on_iteration: Called with (batteries at EOL, n) after every iteration (progress).

    Returns:
        ``(rows, eol, fleet)``: sampled rows (flat arrays, battery index in ``battery``), per-battery
        ``eol_day`` and ``eol_efc`` (interpolated; projected for batteries still alive at ``max_years``),
        and the final fleet (for its per-battery constants).
    """
    cfg = cfg or HistoryConfig()
    fleet = new_fleet(n, seed, params, cfg)
    rng = np.random.default_rng([seed, 3])
    eol_soh = fleet.params.aging.eol_soh
    alive = np.ones(n, bool)
    eol_day, eol_efc = np.full(n, np.nan), np.full(n, np.nan)
    out: dict[str, list[np.ndarray]] = {}
    while alive.any() and fleet.life_days[alive].min() < cfg.max_years * 365.25:
        acc = _representative_day(fleet, cfg, rng, out, alive)
        st, ah_day = acc.mean(fleet.packs.stress(fleet.usage.dod))
        days = _interval_days(fleet, st, ah_day, cfg)
        soh0, day0, efc0 = fleet.packs.soh_pct(), fleet.life_days.copy(), fleet.packs.efc.copy()
        fleet.packs.age(st, days, ah_day * days)
        fleet.life_days += days
        soh1 = fleet.packs.soh_pct()
        ended = alive & (soh1 <= eol_soh)
        frac = np.clip((soh0 - eol_soh) / np.maximum(soh0 - soh1, 1e-12), 0.0, 1.0)
        eol_day = np.where(ended, day0 + frac * days, eol_day)
        eol_efc = np.where(ended, efc0 + frac * (fleet.packs.efc - efc0), eol_efc)
        alive &= ~ended
        if on_iteration is not None:
            on_iteration(int((~alive).sum()), n)
    if alive.any():  # right-censored at max_years: project at the last mean stress
        left = days_to_loss(fleet.packs.q_cal, fleet.packs.q_cyc, st.alpha_q, st.beta_q, ah_day,
                            1.0 - eol_soh / 100.0)
        eol_day = np.where(alive, fleet.life_days + left, eol_day)
        eol_efc = np.where(alive, fleet.packs.efc + left * ah_day / (2 * fleet.params.aging.test_cell_ah),
                           eol_efc)
    rows = {k: np.concatenate(v) for k, v in out.items()}
    return rows, {"eol_day": eol_day, "eol_efc": eol_efc}, fleet
