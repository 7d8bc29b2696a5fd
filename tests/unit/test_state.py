"""The twin's per-battery state (models.state) and its keeper in the score workers
(streams.state.estimator): battery time, not reading counts; duplicates ignored; the fade-law fit
finds a battery's own law; the fault flag has hysteresis; batches and restores change nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models import state as st
from models.features import FEATURE_NAMES, features_from_columns, record_columns, replay
from streams.state.estimator import STATE_BYTES, TwinEstimator

DAY_MS = 86_400_000


def _reading(day: float, k: int = 0, soh: float = 99.0, temperature: float = 25.0, **extra: float) -> dict:
    """A telemetry-like record of service day ``day`` (the ``k``-th of that day)."""
    rec = {"battery_id": "B1", "timestamp": int(1.7e12 + day * DAY_MS + k * 60_000), "soc": 60.0, "soh": soh,
           "voltage": 370.0, "current": 20.0, "temperature": temperature, "charge_cycles": int(day * 0.5),
           "power_consumption": 7.4, "ambient_temperature": 20.0, "cell_voltage_min": 3.84,
           "cell_voltage_max": 3.86, "service_days": float(day), "mode": "DRIVING"}
    rec.update(extra)
    return rec


def _states(records: list[dict], states: dict | None = None) -> np.ndarray:
    cols, mode = record_columns(records)
    ts = np.array([r["timestamp"] for r in records], dtype=np.float64)
    return replay([r["battery_id"] for r in records], cols, mode, ts, states)


def test_dense_and_sparse_readings_of_the_same_days_give_the_same_averages() -> None:
    days = [0, 3, 4, 10, 25, 26, 40]
    sparse = [_reading(d, temperature=20 + d % 7) for d in days]
    dense = [_reading(d, k, temperature=20 + d % 7) for d in days for k in range(4)]
    a, b = _states(sparse)[-1], _states(dense)[-1]
    for slot in ("efc_per_day", "hot_share", "dc_share", "abs_c_rate", "thermal_fast", "thermal_slow",
                 "spread_fast", "spread_slow", "thermal_peak", "excess_peak", "first_days", "closed_day",
                 "days_closed"):
        k = st.SLOTS.index(slot)
        assert a[k] == pytest.approx(b[k], rel=1e-12), slot
    assert a[st.READINGS] == len(days) and b[st.READINGS] == 4 * len(days)


def test_a_quiet_pack_above_the_cooling_set_point_shows_as_thermal_excess_after_its_day() -> None:
    """A failed loop lets a parked or gently driven pack follow a hot day above 30 °C; a working
    one holds it there, and DC charging's heat is no sign of either (a healthy loop cannot hold it)."""
    k = FEATURE_NAMES.index("thermal_excess")
    dc = {"mode": "CHARGING_DC", "current": -300.0, "voltage": 400.0}
    days = [_reading(d, j, temperature=30.0) for d in (0, 1) for j in range(3)]  # held at the set point
    days += [_reading(2, j, temperature=36.0 if j < 2 else 30.0) for j in range(4)]  # mean excess 3 K
    days += [_reading(3, j, temperature=45.0, **dc) for j in range(3)]  # DC: not counted
    days += [_reading(33, 0, temperature=25.0)]
    cols, mode = record_columns(days)
    states = _states(days)
    excess = features_from_columns(cols, mode, states)[:, k]
    assert np.isnan(excess[0]) and excess[5] == 0.0  # nothing closed yet; then held at 30 °C
    assert excess[6:10].max() == 0.0  # day 2 counts once it is over, not reading by reading
    assert excess[10] == pytest.approx(3.0 * math.exp(-1 / st.TAU_SLOW_D), rel=1e-6)  # the hot quiet day (a day ago)
    assert states[12, st.EXCESS_PEAK] == pytest.approx(3.0)  # day 3 (DC only) left the peak as it was
    assert excess[-1] == pytest.approx(3.0 * math.exp(-31 / st.TAU_SLOW_D), rel=1e-6)  # remembered, fading


def test_a_reading_not_newer_than_the_last_changes_nothing() -> None:
    states: dict = {}
    first = _states([_reading(1), _reading(2)], states)[-1]
    again = _states([_reading(2), _reading(1)], states)
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], first)


def test_the_fade_law_fit_finds_the_batterys_own_law_and_bias() -> None:
    rng = np.random.default_rng(1)
    a, b, bias = 3.0, 9.0, 0.7  # fade after 1 year of calendar aging, after 1000 EFC; BMS bias, %
    records = []
    for day in range(0, 1500, 5):
        efc = 0.4 * day
        true = 100 - (a * (day / 365.25) ** 0.75 + b * math.sqrt(efc / 1000))
        for k in range(4):
            records.append(_reading(day, k, soh=true + bias + rng.normal(0, 0.4), charge_cycles=int(efc)))
    s = _states(records)[-1]
    assert s[st.FADE_A] == pytest.approx(a, abs=0.8)
    assert s[st.FADE_B] == pytest.approx(b, abs=2.0)
    assert -s[st.FADE_C] == pytest.approx(bias, abs=0.3)
    cols, mode = record_columns(records[-1:])
    x = features_from_columns(cols, mode, s[None, :])[0]
    last_true = 100 - (a * (1495 / 365.25) ** 0.75 + b * math.sqrt(0.4 * 1495 / 1000))
    assert x[FEATURE_NAMES.index("soh_filtered")] == pytest.approx(last_true, abs=0.3)
    # where the true law reaches 80 %: fade(t) = 20 with EFC = 0.4 t
    t = 1495.0
    while a * (t / 365.25) ** 0.75 + b * math.sqrt(0.4 * t / 1000) < 20:
        t += 1
    assert x[FEATURE_NAMES.index("physics_rul")] == pytest.approx(0.4 * (t - 1495), rel=0.25)


def test_the_fault_flag_opens_above_and_clears_below_with_hysteresis() -> None:
    s = st.new_state()
    flags = []
    for day, score in enumerate([0.1, 0.1, 0.9, 0.9, 0.9, 0.45, 0.45, 0.45, 0.1, 0.1, 0.1, 0.1]):
        st.update(s, float(day), 0.0, float(day * DAY_MS), 99, 50, 20, 20, 0, 1, 10, 0)
        flags.append(st.update_fault(s, score, 0.5, 0.3)[1])
    assert flags[:2] == [False, False]
    assert any(flags[2:5])
    opened = flags.index(True)
    assert all(flags[opened:8])  # between clear and open: stays flagged
    assert not flags[-1]


def test_fault_scores_of_a_batch_with_many_days_of_a_battery_equal_reading_by_reading() -> None:
    """A backlog batch holds days of one battery: each reading's fault score is taken on its own
    day (as training replays it), and a redelivered reading does not count twice."""
    rng = np.random.default_rng(3)
    records = [_reading(d, k, battery_id=f"B{d % 2}") for d in range(40) for k in range(3)]
    anomaly = rng.random(len(records))

    def faults(batch: int, redeliver: int = 0) -> list[tuple[float, bool]]:
        est = TwinEstimator("twin-changelog", fault_open=0.55, fault_clear=0.45)
        out: list[tuple[float, bool]] = []
        for start in range(0, len(records), batch):
            idx = list(range(max(0, start - redeliver), min(start + batch, len(records))))
            chunk = [records[i] for i in idx]
            cols, mode = record_columns(chunk)
            ts = np.array([r["timestamp"] for r in chunk], dtype=np.float64)
            taken: list[bool] = []
            states = est.update([r["battery_id"] for r in chunk], [0] * len(chunk), cols, mode, ts, taken)
            score, flag = est.update_faults([r["battery_id"] for r in chunk], [0] * len(chunk),
                                            anomaly[idx], states, taken)
            fresh = [k for k, i in enumerate(idx) if i >= start]
            out += [(float(score[k]), bool(flag[k])) for k in fresh]
        return out

    one_by_one = faults(1)
    assert any(flag for _, flag in one_by_one) and not all(flag for _, flag in one_by_one)
    assert faults(50) == one_by_one
    assert faults(50, redeliver=10) == one_by_one  # the 10 before each batch read again


def test_state_is_small_and_restores_exactly() -> None:
    s = _states([_reading(d, k) for d in range(30) for k in range(2)])[-1].tolist()
    assert st.PACKED_BYTES == 8 * st.SIZE and STATE_BYTES <= 1024
    np.testing.assert_array_equal(np.array(st.unpack(st.pack(s))), np.array(s))  # NaN == NaN here


def test_estimator_batches_and_a_restore_give_the_same_states_as_one_replay() -> None:
    records = [_reading(d, k, battery_id=f"B{d % 3}") for d in range(60) for k in range(3)]
    whole = _states(records)
    est = TwinEstimator("twin-changelog")
    got = []
    changelog: dict[bytes, bytes | None] = {}
    for start in range(0, len(records), 37):
        chunk = records[start:start + 37]
        cols, mode = record_columns(chunk)
        ts = np.array([r["timestamp"] for r in chunk], dtype=np.float64)
        got.append(est.update([r["battery_id"] for r in chunk], [0] * len(chunk), cols, mode, ts))
        est.flush_changes(lambda topic, value, key, partition: changelog.__setitem__(key, value))
        if start == 37 * 2:  # a new owner restores from the changelog and goes on
            restored = TwinEstimator("twin-changelog")
            restored.states.tables[0] = {k.decode(): restored.states.decode(v)
                                         for k, v in changelog.items() if v is not None}
            est = restored
    np.testing.assert_array_equal(np.concatenate(got), whole)


def test_the_state_benchmark_reports_every_step() -> None:
    from streams.tools.bench_state import run

    result = run(packs=20, ticks=3, batch=25)
    assert set(result) == {"columns", "state_update", "state_features", "fault_score", "changelog_values"}
    assert all(v > 0 for v in result.values())


def test_a_replaced_pack_starts_a_new_twin() -> None:
    """Service days and cycles that start again (a new pack under the same id) reset the twin."""
    old = [_reading(d, soh=88.0, charge_cycles=400 + d, temperature=36.0, mode="PARKED", current=0.0)
           for d in range(1000, 1040)]
    new = [_reading(d, soh=100.0, charge_cycles=d, mode="PARKED", current=0.0) for d in range(0, 3)]
    for k, rec in enumerate(new):
        rec["timestamp"] = old[-1]["timestamp"] + (k + 1) * 60_000  # later in time, earlier in life
    states = _states(old + new)
    before, after = states[len(old) - 1], states[-1]
    assert before[st.READINGS] == len(old) and before[st.EXCESS_PEAK] > 5.0
    assert after[st.READINGS] == 3 and after[st.FIRST_DAYS] == 0.0 and after[st.DAYS_CLOSED] == 2
    assert after[st.EXCESS_PEAK] == 0.0  # the old pack's hot days are not the new pack's
    prior = st.new_state()
    assert abs(after[st.FADE_A] - prior[st.FADE_A]) < 1.0  # the fit starts from the fleet prior again
    # a reading of the same pack a day or so earlier in life (a clock glitch) resets nothing
    glitch = _states(old + [dict(_reading(1038.5, charge_cycles=1439), timestamp=old[-1]["timestamp"] + 1)])
    assert glitch[-1][st.READINGS] == len(old) + 1
