"""The online-accuracy maths (streams/state/accuracy.py, rolling.py) against hand-computed numbers:
the join by event id in either order, MAE and band coverage per battery and fleet-wide, the rolling
window in event time, expiry of unmatched halves by the other stream's time and by the cap,
duplicates, and fault-detection delays per episode."""

from __future__ import annotations

from typing import Any

import pytest

from streams.state.accuracy import PREDICTION, TRUTH, Join, Pair, anomaly_flag
from streams.state.rolling import FLEET, Rolling, Sums, bucket_of

S = 1000  # ms


def pred(battery: str, event: str, t_s: float, rul: float = 500.0, p10: float = 400.0, p90: float = 600.0,
         anomaly: float = 0.1, **extra: Any) -> dict[str, Any]:
    return {"battery_id": battery, "event_id": event, "timestamp": int(t_s * S), "rul_cycles": rul,
            "rul_p10": p10, "rul_p90": p90, "anomaly_score": anomaly, **extra}


def truth(battery: str, event: str, t_s: float, rul: float = 500.0, fault: str = "none") -> dict[str, Any]:
    return {"battery_id": battery, "event_id": event, "timestamp": int(t_s * S), "true_rul_cycles": rul,
            "fault": fault}


def join(window_s: float = 600, max_pending: int = 100) -> Join:
    return Join(int(window_s * S), max_pending, anomaly_flag(0.8))


def test_pairs_form_in_either_order_with_their_error_and_band() -> None:
    j = join()
    assert j.add_prediction(pred("B1", "e1", 0, rul=100, p10=80, p90=120)) is None
    p1 = j.add_truth(truth("B1", "e1", 0, rul=90))
    assert j.add_truth(truth("B1", "e2", 1, rul=200)) is None
    p2 = j.add_prediction(pred("B1", "e2", 1, rul=150, p10=140, p90=190))
    p3 = j.add_truth(truth("B2", "e3", 2, rul=350)) or j.add_prediction(pred("B2", "e3", 2, rul=300, p10=250, p90=350))
    assert p1 is not None and p2 is not None and p3 is not None
    assert (p1.abs_error, p1.in_band) == (10, True)
    assert (p2.abs_error, p2.in_band) == (50, False)   # 200 above the band's 190
    assert (p3.abs_error, p3.in_band) == (50, True)    # on the edge counts as inside
    assert j.pending() == 0

    r = Rolling(bucket_ms=60 * S, window_ms=3600 * S)
    for p in (p1, p2, p3):
        r.add(p)
    fleet, b1 = r.window(FLEET), r.window("B1")
    assert fleet.pairs == 3 and fleet.mae == pytest.approx(110 / 3) and fleet.coverage == pytest.approx(2 / 3)
    assert b1.pairs == 2 and b1.mae == 30 and b1.coverage == 0.5
    assert r.window("B2").mae == 50 and r.window("nobody").mae is None


def test_the_window_is_the_last_buckets_up_to_the_newest() -> None:
    r = Rolling(bucket_ms=60 * S, window_ms=120 * S)

    def p(t_s: float, err: float) -> Pair:
        return Pair("B", f"e{t_s}", int(t_s * S), 100 + err, 0, 1000, 100, False, "none")

    for t_s, err in ((0, 40), (30, 20), (70, 10), (130, 4)):
        r.add(p(t_s, err))
    assert bucket_of(130 * S, 60 * S) == 120 * S and r.newest == 120 * S
    w = r.window(FLEET)  # buckets 60 s and 120 s: the pairs at 70 s and 130 s
    assert w.pairs == 2 and w.mae == 7
    assert r.expire() == [] and sorted(r.buckets["B"]) == [60 * S, 120 * S]
    r.add(p(400, 1))  # the window moves on: both older buckets leave it
    assert r.window("B").pairs == 1 and r.window("B").mae == 1


def test_sums_add_up_exactly_across_buckets() -> None:
    a, b = Sums(2, 30.0, 1, 1, 12.0), Sums(3, 20.0, 3, 0, 0.0)
    a.merge(b)
    assert (a.pairs, a.mae, a.coverage, a.detections, a.delay_s) == (5, 10.0, 0.8, 1, 12.0)
    assert Sums().mae is None and Sums().coverage is None


def test_an_unmatched_half_expires_once_the_other_stream_passed_it() -> None:
    j = join(window_s=10)
    j.add_truth(truth("B", "a", 0))
    j.add_prediction(pred("B", "x", 5))
    assert j.expired == {PREDICTION: 0, TRUTH: 0}
    j.add_prediction(pred("B", "y", 11))      # predictions are 11 s on: the truth of 0 s waited enough
    assert j.expired == {PREDICTION: 0, TRUTH: 1}
    j.add_truth(truth("B", "z", 20))          # truths at 20 s: the prediction of 5 s goes, 11 s stays
    assert j.expired == {PREDICTION: 1, TRUTH: 1}
    assert j.add_truth(truth("B", "y", 11)) is not None  # the lagging truth still finds its prediction
    j.add_truth(truth("C", "c", 0))           # another battery's time does not expire anything of B's
    assert j.pending() == 2                    # B's truth of 20 s and C's truth


def test_a_stalled_stream_keeps_at_most_the_cap_in_all() -> None:
    j = join(window_s=3600, max_pending=3)
    for i in range(5):  # no prediction ever arrives: nothing passes them in time, the cap drops them
        j.add_truth(truth("B", f"t{i}", i))
    assert j.expired[TRUTH] == 2 and j.pending() == 3
    j.add_prediction(pred("C", "c0", 0))  # over the cap: the battery that adds drops its own oldest
    assert j.expired == {PREDICTION: 1, TRUTH: 2} and j.pending() == 3
    assert j.add_prediction(pred("B", "t0", 0)) is None      # B's oldest went first
    assert j.pending() == 3 and j.expired[PREDICTION] == 2   # … and this one, over the cap again
    assert j.add_prediction(pred("B", "t4", 4)) is not None and j.pending() == 2


def test_a_battery_silent_on_both_streams_is_forgotten() -> None:
    j = join(window_s=10)
    j.add_truth(truth("GONE", "g", 0))
    j.add_prediction(pred("LIVE", "x", 15))
    assert j.sweep() == 0  # 15 s on: not yet twice the window
    j.add_truth(truth("LIVE", "y", 21))
    assert j.sweep() == 1 and "GONE" not in j.batteries
    assert j.expired[TRUTH] == 1 and j.pending() == 2


def test_a_duplicate_half_neither_pairs_again_nor_waits() -> None:
    j = join()
    j.add_prediction(pred("B", "e", 1))
    assert j.add_truth(truth("B", "e", 1)) is not None
    assert j.add_prediction(pred("B", "e", 1)) is None and j.add_truth(truth("B", "e", 1)) is None
    assert j.pending() == 0 and j.expired == {PREDICTION: 0, TRUTH: 0}


def _run(j: Join, steps: list[tuple[float, str, float]]) -> list[Pair]:
    """Each step: (t_s, fault per the truth, anomaly score of the prediction)."""
    out = []
    for k, (t_s, fault, anomaly) in enumerate(steps):
        j.add_truth(truth("B", f"e{k}", t_s, fault=fault))
        pair = j.add_prediction(pred("B", f"e{k}", t_s, anomaly=anomaly))
        assert pair is not None
        out.append(pair)
    return out


def test_fault_detection_delay_is_onset_to_first_flag_per_episode() -> None:
    j = join()
    pairs = _run(j, [
        (0, "none", 0.9),              # flagged without a fault: a false alarm, no detection
        (10, "cooling_failure", 0.1),  # onset at 10 s, not flagged yet
        (20, "cooling_failure", 0.95),  # detected: 10 s
        (30, "cooling_failure", 0.95),  # already detected
        (40, "none", 0.1),              # the fault clears
        (50, "internal_short", 0.2),    # a new episode at 50 s
        (65, "internal_short", 0.85),   # detected: 15 s
    ])
    assert [p.detection_delay_s for p in pairs] == [None, None, 10.0, None, None, None, 15.0]
    episode = j.episodes["B"]
    assert (episode.fault, episode.onset_ms, episode.detected_ms, episode.delay_s) == \
        ("internal_short", 50 * S, 65 * S, 15.0)
    assert j.onsets == 2 and j.changed == {"B"}


def test_the_battery_fault_flag_wins_and_a_dropout_is_never_expected() -> None:
    j = join()
    pairs = _run(j, [(0, "sensor_dropout", 0.99), (5, "sensor_dropout", 0.99)])
    assert [p.detection_delay_s for p in pairs] == [None, None]  # telemetry_gap's job, not the flag's
    j = join()
    j.add_truth(truth("B", "a", 0, fault="dc_fast_charge_damage"))
    j.add_truth(truth("B", "b", 3, fault="dc_fast_charge_damage"))
    assert j.add_prediction(pred("B", "a", 0, anomaly=0.99, fault_flag=False)).detection_delay_s is None  # type: ignore[union-attr]
    assert j.add_prediction(pred("B", "b", 3, anomaly=0.0, fault_flag=True)).detection_delay_s == 3.0  # type: ignore[union-attr]


def test_a_late_or_replayed_truth_does_not_restart_an_episode() -> None:
    j = join()
    j.add_truth(truth("B", "a", 10, fault="cooling_failure"))
    j.add_truth(truth("B", "b", 5))                    # older than the newest truth: no change
    assert j.episodes["B"].fault == "cooling_failure" and j.episodes["B"].onset_ms == 10 * S
    assert j.add_prediction(pred("B", "b", 5, anomaly=0.9)).detection_delay_s is None  # type: ignore[union-attr]  # before the onset
    assert j.add_prediction(pred("B", "a", 10, anomaly=0.9)).detection_delay_s == 0.0  # type: ignore[union-attr]


def test_a_pair_carries_the_failure_probability_and_the_label_when_both_halves_have_them() -> None:
    j = join()
    j.add_truth({**truth("B1", "e1", 0), "failure_within_horizon": True})
    both = j.add_prediction(pred("B1", "e1", 0, failure_probability=0.7))
    no_label = j.add_prediction(pred("B1", "e2", 1, failure_probability=0.2)) or j.add_truth(truth("B1", "e2", 1))
    no_probability = j.add_prediction(pred("B1", "e3", 2)) or j.add_truth(
        {**truth("B1", "e3", 2), "failure_within_horizon": False})
    odd = j.add_prediction(pred("B1", "e4", 3, failure_probability=float("inf"))) or j.add_truth(
        {**truth("B1", "e4", 3), "failure_within_horizon": False})
    assert both is not None and (both.failure_probability, both.failure_within_horizon) == (0.7, True)
    assert both.failure_known
    assert no_label is not None and no_label.failure_within_horizon is None and not no_label.failure_known
    assert no_probability is not None and not no_probability.failure_known
    assert odd is not None and not odd.failure_known

    r = Rolling(bucket_ms=60 * S, window_ms=3600 * S)
    for p in (both, no_label, no_probability, odd):
        r.add(p)
    extra = j.add_truth({**truth("B2", "e5", 4), "failure_within_horizon": False}) or j.add_prediction(
        pred("B2", "e5", 4, failure_probability=0.1))
    assert extra is not None
    r.add(extra)
    fleet = r.window(FLEET)
    assert fleet.pairs == 5 and fleet.failure_pairs == 2  # only the pairs with both halves
    assert fleet.failure_mean_probability == pytest.approx(0.4)
    assert fleet.failure_observed_rate == 0.5
    assert fleet.failure_brier == pytest.approx(((0.7 - 1) ** 2 + 0.1 ** 2) / 2)
    assert fleet.failure_baseline_brier == 0.25
    assert Sums().failure_brier is None and Sums().failure_baseline_brier is None
