"""The twin's memory of one battery: the ONE state-update function training and serving share.

A score worker keeps one :data:`State` per battery (``streams/state/estimator.py``, partition state
on a changelog); training replays every battery's dataset rows causally through the same
:func:`update` (``models.features.features_from_frame``). The state is defined in **battery time**
(service days and equivalent full cycles, EFC), never in reading counts or wall-clock time, so the
dense live stream (about one reading per simulated day at the demo's speed-up, any rate) and the
sparse dataset (4 readings per sampled day, days apart) give the same values:

- readings are first averaged within their **service day** (a bucket, ``floor(service_days)``);
- when a reading of a later day arrives, the finished day updates the filters once, with weights
  that depend on the days elapsed (exponential moving averages with time constants in days) and on
  how many readings the day had (the Kalman filter's measurement variance);
- features read the filters as of the last finished day plus, for the fast averages, the
  provisional contribution of the current day (``models.features``).

Pure Python on a list of floats (one :data:`State`, :data:`SIZE` float64 values, 8 bytes each: 360
bytes packed, see :func:`pack`), so one reading costs a few microseconds in the worker.

Quantities (slot names in :data:`SLOTS`; unit; meaning):

==============  =======  =====================================================================
slot            unit     meaning
==============  =======  =====================================================================
day             d        service day of the open bucket (``floor(service_days)``), NaN before
                         the first reading
last_days       d        service days of the newest reading
last_ts         ms       event time of the newest reading (last seen; readings at or before it
                         are duplicates or late and do not change the state)
readings        1        readings taken in
b_n             1        readings in the open day
b_soh           %        sum of the BMS SoH of the open day
b_hot           1        readings of the open day hotter than :data:`HOT_C`
b_high_soc      1        readings of the open day above :data:`HIGH_SOC_PCT`
b_dc            1        readings of the open day in DC charging
b_abs_c         1/h      sum of abs(C-rate) of the open day
b_thermal       K        sum of the thermal residual of the open day (below)
b_spread        mV       sum of the cell-voltage spread of the open day (0 when not reported)
closed_day      d        service day of the last finished day, NaN before one finished
closed_efc      EFC      EFC at the end of that day
efc             EFC      EFC of the newest reading
days_closed     1        finished days
fade_c          %        Kalman state of the fade law ``fade = c + a*(t/365.25 d)^0.75 +
                         b*sqrt(EFC/1000)`` fitted to the BMS estimate (100 - SoH): ``c`` is
                         minus the BMS bias (the true fade of a new pack is 0)
fade_a          %        calendar coefficient (fade after one year of calendar aging)
fade_b          %        cycle coefficient (fade after 1000 EFC)
p_cc … p_bb     %²       covariance of (c, a, b): cc, ca, cb, aa, ab, bb
efc_per_day     EFC/d    moving average (:data:`TAU_USAGE_D`) of EFC per service day
hot_share       0-1      moving average (:data:`TAU_STRESS_D`) of the share of readings above
                         :data:`HOT_C` (time at high temperature)
high_soc_share  0-1      … of readings above :data:`HIGH_SOC_PCT` (time at high SoC)
dc_share        0-1      … of readings in DC charging (DC-charging share)
abs_c_rate      1/h      … of abs(C-rate)
thermal_fast    K        moving average (:data:`TAU_FAST_D`) of the thermal residual:
                         ``temperature - min(ambient, T_set) - k*heat``, the pack's temperature
                         above what a working cooling loop holds it to (``T_set`` = 30 °C, the
                         cooling set point; a healthy pack drifts to ambient below it and is held
                         at it above) and the hot spot the present losses explain (``heat`` =
                         overpotential x current, W; ``k`` = :data:`HOTSPOT_K_PER_W`). A failed
                         loop in heat or under load, an internal short's heat and a drifting
                         sensor raise it.
thermal_slow    K        the same over :data:`TAU_SLOW_D` (its baseline; fast - slow = trend)
spread_fast     mV       moving average (:data:`TAU_FAST_D`) of the cell-voltage spread
spread_slow     mV       the same over :data:`TAU_SLOW_D`
b_thermal_max   K        highest thermal residual of the open day
thermal_peak    K        highest daily thermal residual, decaying over :data:`TAU_SLOW_D` (a failed
                         cooling loop shows only on hot or loaded days; the twin remembers them)
f_day           d        service day of the fault-score bucket (NaN before the first score)
f_n             1        scores in that day
f_sum           0-1      their sum
f_ema           0-1      moving average (:data:`TAU_FAULT_D`) of the daily mean anomaly score,
                         as of the last finished day
f_closed_day    d        service day of that last finished day
f_flag          0/1      the battery is flagged faulty (hysteresis on the fault score)
b_excess        K        sum of the set-point excess of the open day's quiet readings (below)
b_excess_n      1        quiet readings of the open day (not DC charging, losses below
                         :data:`QUIET_HEAT_W`)
excess_peak     K        highest daily mean set-point excess, decaying over :data:`TAU_SLOW_D`:
                         ``max(0, temperature - k*heat - T_set)`` on quiet readings, the pack's
                         temperature above the set point a working cooling loop holds it to.
                         A healthy loop keeps a quiet pack at or below ``T_set`` (the daily mean
                         stayed under 1 K on all but one healthy pack of the 400-pack training
                         fleet, seed 0); a failed loop lets it follow a warm ambient or its own
                         heat (``C dT/dt = Q - hA (T - T_amb)`` without the cooling term,
                         ``models.physics.thermal``). Unlike the thermal residual it needs no
                         ambient and is not raised by the cold-weather gap below ``T_set``; DC
                         charging is left out: a healthy loop cannot hold its kilowatts either
first_days      d        service days of the first reading the twin took (a twin attached to a pack
                         mid-life, as live workers mostly are, has not seen its early life)
==============  =======  =====================================================================

The fade-law prior (mean and spread of ``a`` and ``b`` over the fleet, ``c`` from the BMS bias)
is :data:`PRIOR`; the law is Schmalstieg's (calendar ``t^0.75``, cycle ``sqrt(Ah)``), as the
simulator's aging model.
"""

from __future__ import annotations

import math
import struct

SLOTS: tuple[str, ...] = (
    "day", "last_days", "last_ts", "readings",
    "b_n", "b_soh", "b_hot", "b_high_soc", "b_dc", "b_abs_c", "b_thermal", "b_spread",
    "closed_day", "closed_efc", "efc", "days_closed",
    "fade_c", "fade_a", "fade_b", "p_cc", "p_ca", "p_cb", "p_aa", "p_ab", "p_bb",
    "efc_per_day", "hot_share", "high_soc_share", "dc_share", "abs_c_rate",
    "thermal_fast", "thermal_slow", "spread_fast", "spread_slow", "b_thermal_max", "thermal_peak",
    "f_day", "f_n", "f_sum", "f_ema", "f_closed_day", "f_flag",
    "b_excess", "b_excess_n", "excess_peak", "first_days",
)
"""Names of the state's slots, in order (units in the module docstring)."""
SIZE = len(SLOTS)
(DAY, LAST_DAYS, LAST_TS, READINGS, B_N, B_SOH, B_HOT, B_HIGH_SOC, B_DC, B_ABS_C, B_THERMAL, B_SPREAD,
 CLOSED_DAY, CLOSED_EFC, EFC, DAYS_CLOSED, FADE_C, FADE_A, FADE_B, P_CC, P_CA, P_CB, P_AA, P_AB, P_BB,
 EFC_PER_DAY, HOT_SHARE, HIGH_SOC_SHARE, DC_SHARE, ABS_C_RATE, THERMAL_FAST, THERMAL_SLOW,
 SPREAD_FAST, SPREAD_SLOW, B_THERMAL_MAX, THERMAL_PEAK, F_DAY, F_N, F_SUM, F_EMA, F_CLOSED_DAY, F_FLAG,
 B_EXCESS, B_EXCESS_N, EXCESS_PEAK, FIRST_DAYS) = range(SIZE)

State = list[float]
"""One battery's state: :data:`SIZE` floats, slots :data:`SLOTS`."""

NAN = float("nan")
HOT_C = 35.0
"""Temperature counted as high (°C)."""
HIGH_SOC_PCT = 90.0
"""State of charge counted as high (%)."""
T_SET_C = 30.0
"""Cooling set point of the pack (°C, ``models.physics.params.ThermalParams.t_cooling_on_c``)."""
HOTSPOT_K_PER_W = 0.0015
"""Max-sensor rise per W of losses (K/W, ``ThermalParams.hotspot_k_per_w``)."""
QUIET_HEAT_W = 300.0
"""Losses (W, abs) below which a reading counts for the set-point excess: a parked, gently driven
or AC-charged pack (a healthy loop holds those at ``T_set``; DC charging's kilowatts it cannot)."""
CAPACITY_AH = 216.0
"""Nominal pack capacity (Ah), for the C-rate."""
DC_MODE = 4
"""Mode code of DC charging (index into ``schemas.fields.OPERATING_MODES``)."""
TAU_USAGE_D = 60.0
"""Time constant of the EFC-per-day average (days)."""
TAU_STRESS_D = 180.0
"""Time constant of the stress exposures (days)."""
TAU_FAST_D = 7.0
"""Time constant of the fast thermal and cell-spread averages (days)."""
TAU_SLOW_D = 90.0
"""Time constant of their slow baselines (days)."""
TAU_FAULT_D = 3.0
"""Time constant of the fault score (days)."""
CAL_EXP = 0.75
"""Calendar-fade time exponent (Schmalstieg et al. 2014)."""
YEAR_D = 365.25
EFC_SCALE = 1000.0
"""EFC unit of the cycle term (fade after 1000 EFC)."""
BMS_NOISE_PCT = 0.4
"""Noise of one BMS SoH estimate (%-points, 1 sigma; ``SpreadParams.bms_soh_noise_pct``)."""
LAW_NOISE_PCT = 0.15
"""Misfit of the fade law per day (%-points, 1 sigma): the stress, hence the slope, changes."""
PRIOR: tuple[float, float, float, float, float, float] = (0.0, 4.0, 4.0, 0.8, 3.0, 8.0)
"""Fade-law prior: means of (c, a, b) in %-points, then their standard deviations. ``c`` is
minus the BMS bias (sigma 0.8 %, ``SpreadParams.bms_soh_bias_pct``); ``a`` and ``b`` span the fleet
(per-battery least-squares fits of the true fade on the 400-pack training fleet, seed 0)."""


def new_state() -> State:
    """The state of a battery never seen (the prior, no readings)."""
    s = [0.0] * SIZE
    c0, a0, b0, sc, sa, sb = PRIOR
    for k in (DAY, LAST_DAYS, LAST_TS, CLOSED_DAY, CLOSED_EFC, F_DAY, F_CLOSED_DAY, F_EMA, B_THERMAL_MAX,
              THERMAL_PEAK, EXCESS_PEAK, FIRST_DAYS):
        s[k] = NAN
    for k in (EFC_PER_DAY, HOT_SHARE, HIGH_SOC_SHARE, DC_SHARE, ABS_C_RATE, THERMAL_FAST, THERMAL_SLOW,
              SPREAD_FAST, SPREAD_SLOW):
        s[k] = NAN
    s[FADE_C], s[FADE_A], s[FADE_B] = c0, a0, b0
    s[P_CC], s[P_AA], s[P_BB] = sc * sc, sa * sa, sb * sb
    return s


def law_inputs(days: float, efc: float) -> tuple[float, float]:
    """Regressors of the fade law: ``((days/365.25)^0.75, sqrt(EFC/1000))`` (negative inputs -> 0)."""
    return (max(days, 0.0) / YEAR_D) ** CAL_EXP, math.sqrt(max(efc, 0.0) / EFC_SCALE)


def _ema(old: float, new: float, alpha: float) -> float:
    return new if old != old else old + alpha * (new - old)  # NaN (never set): take the first value


def _close_day(s: State) -> None:
    """Fold the open day into the filters (the day is over: a later one began)."""
    n = s[B_N]
    if n <= 0.0:
        return
    day = s[DAY]
    prev = s[CLOSED_DAY]
    gap = day - prev if prev == prev else 0.0
    if gap < 0.0:
        gap = 0.0
    efc = s[EFC]
    if gap > 0.0:
        rate = (efc - s[CLOSED_EFC]) / gap
        s[EFC_PER_DAY] = _ema(s[EFC_PER_DAY], rate if rate > 0.0 else 0.0, 1.0 - math.exp(-gap / TAU_USAGE_D))
    a_stress = 1.0 - math.exp(-gap / TAU_STRESS_D)
    inv = 1.0 / n
    s[HOT_SHARE] = _ema(s[HOT_SHARE], s[B_HOT] * inv, a_stress)
    s[HIGH_SOC_SHARE] = _ema(s[HIGH_SOC_SHARE], s[B_HIGH_SOC] * inv, a_stress)
    s[DC_SHARE] = _ema(s[DC_SHARE], s[B_DC] * inv, a_stress)
    s[ABS_C_RATE] = _ema(s[ABS_C_RATE], s[B_ABS_C] * inv, a_stress)
    a_fast, a_slow = 1.0 - math.exp(-gap / TAU_FAST_D), 1.0 - math.exp(-gap / TAU_SLOW_D)
    thermal, spread = s[B_THERMAL] * inv, s[B_SPREAD] * inv
    s[THERMAL_FAST] = _ema(s[THERMAL_FAST], thermal, a_fast)
    s[THERMAL_SLOW] = _ema(s[THERMAL_SLOW], thermal, a_slow)
    s[SPREAD_FAST] = _ema(s[SPREAD_FAST], spread, a_fast)
    s[SPREAD_SLOW] = _ema(s[SPREAD_SLOW], spread, a_slow)
    peak = s[THERMAL_PEAK]
    peak = peak * math.exp(-gap / TAU_SLOW_D) if peak == peak else s[B_THERMAL_MAX]
    s[THERMAL_PEAK] = peak if peak > s[B_THERMAL_MAX] else s[B_THERMAL_MAX]
    peak = s[EXCESS_PEAK]
    if peak == peak:
        peak *= math.exp(-gap / TAU_SLOW_D)
    if s[B_EXCESS_N] > 0.0:
        excess = s[B_EXCESS] / s[B_EXCESS_N]
        if not excess <= peak:  # also when the peak is still NaN
            peak = excess
    s[EXCESS_PEAK] = peak
    # Kalman update of the (static) fade-law coefficients with the day's mean BMS fade.
    x1, x2 = law_inputs(day, efc)
    z = 100.0 - s[B_SOH] * inv
    cc, ca, cb, aa, ab, bb = s[P_CC], s[P_CA], s[P_CB], s[P_AA], s[P_AB], s[P_BB]
    pc = cc + ca * x1 + cb * x2
    pa = ca + aa * x1 + ab * x2
    pb = cb + ab * x1 + bb * x2
    r = BMS_NOISE_PCT * BMS_NOISE_PCT * inv + LAW_NOISE_PCT * LAW_NOISE_PCT
    S = pc + pa * x1 + pb * x2 + r
    innov = (z - (s[FADE_C] + s[FADE_A] * x1 + s[FADE_B] * x2)) / S
    s[FADE_C] += pc * innov
    s[FADE_A] += pa * innov
    s[FADE_B] += pb * innov
    s[P_CC], s[P_CA], s[P_CB] = cc - pc * pc / S, ca - pc * pa / S, cb - pc * pb / S
    s[P_AA], s[P_AB], s[P_BB] = aa - pa * pa / S, ab - pa * pb / S, bb - pb * pb / S
    s[CLOSED_DAY], s[CLOSED_EFC] = day, efc
    s[DAYS_CLOSED] += 1.0
    s[B_N] = s[B_SOH] = s[B_HOT] = s[B_HIGH_SOC] = s[B_DC] = s[B_ABS_C] = s[B_THERMAL] = s[B_SPREAD] = 0.0
    s[B_EXCESS] = s[B_EXCESS_N] = 0.0
    s[B_THERMAL_MAX] = NAN


def update(s: State, days: float, efc: float, ts: float, soh: float, soc: float, temperature: float,
           ambient: float, current: float, mode: int, spread_mv: float, heat_w: float) -> bool:
    """Take one reading into the state ``s`` (in place). The one function training and serving run.

    Args:
        s: The battery's state (:func:`new_state` for a battery never seen).
        days: Service days (d); NaN when not reported: the event time's day stands in.
        efc: Equivalent full cycles so far.
        ts: Event time (ms since the epoch); NaN when unknown (then never a duplicate).
        soh: BMS state of health (%).
        soc: State of charge (%).
        temperature: Pack temperature (°C).
        ambient: Ambient temperature (°C); NaN when not reported (the residual then uses T_set).
        current: Pack current (A, > 0 discharge).
        mode: Operating-mode code (``schemas.fields.OPERATING_MODES`` index).
        spread_mv: Cell-voltage spread (mV); NaN when not reported (counts as 0).
        heat_w: Losses, overpotential x current (W; ``models.features.heat_w``), NaN = unknown (0).

    Returns:
        False when the reading is not newer than the last one taken (a duplicate after a
        redelivery, or late): the state is left as it was.

    A newer reading whose service days fall back by more than a day while its cycle count also
    falls is a new pack in the vehicle (a replacement, as the live fleet makes at end of life or
    60 days after a fault): the twin starts over from :func:`new_state`, so the old pack's fade
    fit, exposures and fault flag are not read as the new pack's.
    """
    if ts <= s[LAST_TS]:  # False while LAST_TS is NaN, and for a NaN ts
        return False
    if days != days:
        days = ts / 86_400_000.0 if ts == ts else 0.0
    elif days < s[LAST_DAYS] - 1.0 and efc < s[EFC]:  # False while the state is new (NaN)
        s[:] = new_state()  # a new pack under this id (replaced): its service days and cycles start again
    day = math.floor(days)
    if day != s[DAY]:
        if s[B_N] > 0.0 and day > s[DAY]:
            _close_day(s)
        if s[B_N] == 0.0 or day > s[DAY]:
            s[DAY] = day
    if s[FIRST_DAYS] != s[FIRST_DAYS]:  # the twin's first reading of this pack
        s[FIRST_DAYS] = days
    s[LAST_DAYS] = days
    s[LAST_TS] = ts
    s[EFC] = efc
    s[READINGS] += 1.0
    s[B_N] += 1.0
    s[B_SOH] += soh
    if temperature > HOT_C:
        s[B_HOT] += 1.0
    if soc > HIGH_SOC_PCT:
        s[B_HIGH_SOC] += 1.0
    if mode == DC_MODE:
        s[B_DC] += 1.0
    s[B_ABS_C] += abs(current) / CAPACITY_AH
    hotspot = HOTSPOT_K_PER_W * heat_w if heat_w > 0.0 else 0.0
    residual = temperature - (ambient if ambient < T_SET_C else T_SET_C) - hotspot
    s[B_THERMAL] += residual
    if mode != DC_MODE and -QUIET_HEAT_W < heat_w < QUIET_HEAT_W:  # an unknown (NaN) heat does not count
        excess = temperature - hotspot - T_SET_C
        s[B_EXCESS] += excess if excess > 0.0 else 0.0
        s[B_EXCESS_N] += 1.0
    if not residual <= s[B_THERMAL_MAX]:  # also when the day's max is still NaN
        s[B_THERMAL_MAX] = residual
    if spread_mv == spread_mv:
        s[B_SPREAD] += spread_mv
    return True


def update_fault(s: State, score: float, open_at: float, clear_at: float,
                 day: float | None = None) -> tuple[float, bool]:
    """Take one reading's anomaly score into the battery's fault score; return (score, flagged).

    The fault score is a moving average in battery time (:data:`TAU_FAULT_D`) of the daily mean
    anomaly score, including the current day provisionally. The battery is flagged when it rises
    above ``open_at`` and stays flagged until it falls below ``clear_at`` (hysteresis). ``day`` is
    the reading's service day (whole days, as :func:`update` keeps it in ``s[DAY]``); without it,
    call this right after :func:`update` with the same reading (then ``s[DAY]`` is the reading's).
    """
    day = s[DAY] if day is None else day
    if day != s[F_DAY]:
        if s[F_N] > 0.0 and day > s[F_DAY]:
            prev = s[F_CLOSED_DAY]
            gap = s[F_DAY] - prev if prev == prev else 0.0
            s[F_EMA] = _ema(s[F_EMA], s[F_SUM] / s[F_N], 1.0 - math.exp(-max(gap, 0.0) / TAU_FAULT_D))
            s[F_CLOSED_DAY] = s[F_DAY]
            s[F_N] = s[F_SUM] = 0.0
        if s[F_N] == 0.0 or day > s[F_DAY]:
            s[F_DAY] = day
    s[F_N] += 1.0
    s[F_SUM] += score
    value = _fault_value(s)
    if s[F_FLAG] > 0.0:
        if value < clear_at:
            s[F_FLAG] = 0.0
    elif value > open_at:
        s[F_FLAG] = 1.0
    return value, s[F_FLAG] > 0.0


def _fault_value(s: State) -> float:
    """The fault score: the moving average of the closed days with the open day's mean."""
    if s[F_N] == 0.0:
        return s[F_EMA] if s[F_EMA] == s[F_EMA] else 0.0
    mean = s[F_SUM] / s[F_N]
    ema, prev = s[F_EMA], s[F_CLOSED_DAY]
    if ema != ema:
        return mean
    gap = s[F_DAY] - prev if prev == prev else 0.0
    return ema + (1.0 - math.exp(-max(gap, 0.0) / TAU_FAULT_D)) * (mean - ema)


def fault_now(s: State) -> tuple[float, bool]:
    """The battery's fault score and flag as they stand, changing nothing (for a reading that
    :func:`update` did not take: a redelivery must not count its anomaly score twice)."""
    return _fault_value(s), s[F_FLAG] > 0.0


_PACKER = struct.Struct(f"<{SIZE}d")
PACKED_BYTES = _PACKER.size
"""Bytes of a packed state (:func:`pack`)."""


def pack(s: State) -> bytes:
    """The state as little-endian float64 (exact; :data:`PACKED_BYTES` bytes)."""
    return _PACKER.pack(*s)


def unpack(data: bytes) -> State:
    """Inverse of :func:`pack`; a shorter (older) state is completed from :func:`new_state`."""
    n = len(data) // 8
    values = list(struct.unpack(f"<{n}d", data[: n * 8]))
    return values + new_state()[n:] if n < SIZE else values[:SIZE]


__all__ = ["PACKED_BYTES", "PRIOR", "SIZE", "SLOTS", "State", "law_inputs", "new_state", "pack",
           "unpack", "update", "update_fault", "fault_now"]
