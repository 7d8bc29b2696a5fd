"""Fleet API: shapes, determinism, monotone SoH, labels, and the effect of every fault."""

from __future__ import annotations

import dataclasses

import numpy as np

from models.physics import faults
from models.physics.bench import run_bench
from models.physics.fleet import FAULT_NAMES, Fleet
from models.physics.params import FaultParams, PackParams
from models.physics.sensors import READING_FIELDS
from models.physics.usage import CHARGING_DC, PARKED

NO_FAULTS = PackParams(faults=FaultParams(incidence=0.0))


def _pair(code: int, since_days: float, n: int = 40) -> tuple[Fleet, Fleet]:
    """Two identical fault-free fleets; the first gets fault ``code`` active for ``since_days``."""
    fleets = (Fleet(n, seed=5, params=NO_FAULTS), Fleet(n, seed=5, params=NO_FAULTS))
    fleets[0].fault_code[:] = code
    fleets[0].fault_onset[:] = fleets[0].life_days - since_days
    return fleets


def _force_mode(fleet: Fleet, mode: int, soc: float) -> None:
    fleet.usage.mode[:] = mode
    fleet.usage.left_s[:] = 1e9
    fleet.packs.soc[:] = soc


def test_api_shapes_ids_and_keys() -> None:
    fleet = Fleet(12, seed=0, start_time_s=1.7e9)
    assert fleet.battery_ids[0] == "BATTERY_0001" and len(fleet.battery_ids) == 12
    fleet.step(1.0)
    assert fleet.sim_time_s == 1.7e9 + 1.0
    rd, gt = fleet.readings(), fleet.ground_truth()
    assert tuple(rd) == READING_FIELDS
    assert set(gt) == {"true_soh", "true_rul_cycles", "failure_within_horizon", "fault",
                       "capacity_ah", "r0_ohm"}
    assert all(v.shape == (12,) for v in (*rd.values(), *gt.values()))
    assert rd["valid"].dtype == bool and gt["failure_within_horizon"].dtype == bool
    assert np.allclose(rd["power_consumption"], rd["voltage"] * rd["current"] / 1000.0)
    assert FAULT_NAMES[0] == "none" and len(FAULT_NAMES) == 6


def test_same_seed_same_output_and_other_seed_differs() -> None:
    runs = []
    for seed in (3, 3, 4):
        fleet = Fleet(50, seed=seed)
        for _ in range(300):
            fleet.step(5.0, aging_dt_s=3600.0)
        runs.append((fleet.readings(), fleet.ground_truth()))
    for key in runs[0][0]:
        np.testing.assert_array_equal(runs[0][0][key], runs[1][0][key])
    np.testing.assert_array_equal(runs[0][1]["true_soh"], runs[1][1]["true_soh"])
    assert not np.array_equal(runs[0][0]["voltage"], runs[2][0]["voltage"])


def test_soh_never_rises_without_a_fault_or_pack_replacement() -> None:
    fleet = Fleet(200, seed=1, params=NO_FAULTS)
    soh, life = fleet.ground_truth()["true_soh"], fleet.life_days.copy()
    falls = 0
    for _ in range(500):
        fleet.step(10.0, aging_dt_s=6 * 3600.0)
        new_soh, new_life = fleet.ground_truth()["true_soh"], fleet.life_days.copy()
        same_pack = new_life > life
        assert np.all(new_soh[same_pack] <= soh[same_pack])
        falls += int(np.sum(new_soh[same_pack] < soh[same_pack]))
        soh, life = new_soh, new_life
    assert falls > 0


def test_accelerated_aging_follows_the_mean_stress_not_the_present_instant() -> None:
    """``evtwin up`` ages one day per second of operation. Each pack then ages at its mean rates:
    a driving pack does not age as if it drove all day, a parked one as if it never moved, and the
    true RUL (projected at those rates) stays what the pack's life says (it fell to a median of 0
    cycles within 30 such steps when the present instant was stretched over the day)."""
    fleet = Fleet(300, seed=8, params=NO_FAULTS)
    fleet.step(1.0, 86_400.0)  # packs pre-aged past end of life are replaced here
    rul0, efc0, life0 = fleet.ground_truth()["true_rul_cycles"], fleet.packs.efc.copy(), fleet.life_days.copy()
    per_day = fleet.rates.efc_per_day().copy()
    for _ in range(60):
        fleet.step(1.0, 86_400.0)
    same = fleet.life_days > life0  # not replaced
    assert same.mean() > 0.9
    np.testing.assert_allclose((fleet.packs.efc - efc0)[same], 60 * per_day[same], rtol=0.05)
    rul = fleet.ground_truth()["true_rul_cycles"]
    used = fleet.packs.efc - efc0
    assert np.median(rul0) > 100.0
    np.testing.assert_allclose(rul[same], np.maximum(rul0[same] - used[same], 0.0), rtol=0.1, atol=5.0)


def test_service_days_is_the_life_clock_and_restarts_with_a_new_pack() -> None:
    fleet = Fleet(30, seed=5, params=NO_FAULTS)
    days = fleet.readings()["service_days"]
    assert days.dtype == np.float64 and np.array_equal(days, fleet.life_days)
    assert days.min() >= 0.0 and days.max() <= 6 * 365.0
    fleet.packs.q_cal[:5], fleet.packs.q_cyc[:5] = 0.2, 0.0  # five packs at end of life
    fleet.packs.q_cal[5:], fleet.packs.q_cyc[5:] = 0.05, 0.0  # the others far from it
    fleet.step(10.0, aging_dt_s=86_400.0)
    after = fleet.readings()["service_days"]
    np.testing.assert_allclose(after[:5], 0.0)  # replaced: a new pack, age 0
    np.testing.assert_allclose(after[5:], days[5:] + 1.0)
    after[:] = -1.0  # a copy, not the fleet's own clock
    assert fleet.life_days.min() >= 0.0


def test_reported_soh_differs_from_truth_by_about_one_percent() -> None:
    fleet = Fleet(2000, seed=2, params=NO_FAULTS)
    err = fleet.readings()["soh"] - fleet.ground_truth()["true_soh"]
    inside = fleet.ground_truth()["true_soh"] < 99.0  # away from the 100 % clip
    assert 0.5 < np.std(err[inside]) < 1.5


def test_failure_within_horizon_near_end_of_life_not_when_new() -> None:
    fleet = Fleet(20, seed=3, params=NO_FAULTS)
    fleet.packs.q_cal[:10], fleet.packs.q_cyc[:10] = 0.1995, 0.0
    fleet.packs.q_cal[10:], fleet.packs.q_cyc[10:] = 0.0, 0.0
    gt = fleet.ground_truth()
    assert gt["failure_within_horizon"][:10].all() and not gt["failure_within_horizon"][10:].any()
    assert np.all(gt["true_rul_cycles"][:10] < gt["true_rul_cycles"][10:].min())


def test_internal_short_raises_temperature_and_self_discharge() -> None:
    bad, good = _pair(faults.INTERNAL_SHORT, since_days=40.0)
    for fleet in (bad, good):
        _force_mode(fleet, PARKED, 0.8)
        for _ in range(24 * 60):
            fleet.step(60.0, aging_dt_s=0.0)
    assert np.all(bad.packs.soc < good.packs.soc - 0.05)
    assert np.all(bad.readings()["temperature"] > good.readings()["temperature"] + 3.0)
    assert np.all(bad.ground_truth()["fault"] == faults.INTERNAL_SHORT)


def test_cooling_failure_raises_temperature_under_load() -> None:
    bad, good = _pair(faults.COOLING_FAILURE, since_days=1.0)
    peaks = []
    for fleet in (bad, good):
        _force_mode(fleet, CHARGING_DC, 0.1)
        fleet.packs.temp_c[:] = 32.0
        peak = np.zeros(fleet.n)
        for _ in range(40 * 6):
            fleet.step(10.0, aging_dt_s=0.0)
            peak = np.maximum(peak, fleet.packs.temp_c)
        peaks.append(peak)
    assert np.all(peaks[0] > peaks[1] + 1.0)


def test_weak_cell_widens_cell_voltage_spread() -> None:
    bad, good = _pair(faults.WEAK_CELL, since_days=90.0)
    spreads = []
    for fleet in (bad, good):
        _force_mode(fleet, PARKED, 0.2)
        fleet.step(1.0, aging_dt_s=0.0)
        rd = fleet.readings()
        spreads.append(rd["cell_voltage_max"] - rd["cell_voltage_min"])
    assert np.all(spreads[0] > spreads[1] + 0.02)
    assert np.all(spreads[1] < 0.05)


def test_sensor_drift_biases_temperature_only() -> None:
    bad, good = _pair(faults.SENSOR_DRIFT, since_days=20.0)
    for fleet in (bad, good):
        for _ in range(50):
            fleet.step(1.0, aging_dt_s=0.0)
    bias = bad.readings()["temperature"] - good.readings()["temperature"]
    np.testing.assert_allclose(bias, 20.0 * FaultParams().drift_c_per_day, atol=1e-9)
    np.testing.assert_array_equal(bad.packs.temp_c, good.packs.temp_c)


def test_sensor_dropout_makes_readings_invalid() -> None:
    bad, good = _pair(faults.SENSOR_DROPOUT, since_days=1.0)
    invalid_bad = invalid_good = 0
    for _ in range(720):
        bad.step(10.0, aging_dt_s=0.0)
        good.step(10.0, aging_dt_s=0.0)
        invalid_bad += int((~bad.readings()["valid"]).sum())
        invalid_good += int((~good.readings()["valid"]).sum())
    assert invalid_good == 0
    assert invalid_bad > 0.1 * 720 * bad.n


def test_bench_reports_throughput() -> None:
    res = run_bench(n_batteries=200, steps=5)
    assert res["n_batteries"] == 200 and res["steps"] == 5
    assert res["battery_steps_per_s"] > 0.0 and res["seconds"] > 0.0


def test_bad_arguments_raise_physics_error() -> None:
    import pytest

    from models.physics import PhysicsError

    with pytest.raises(PhysicsError):
        Fleet(0, seed=0)
    with pytest.raises(PhysicsError):
        Fleet(2, seed=0).step(0.0)
    assert dataclasses.is_dataclass(NO_FAULTS)
