"""Alert rules: one episode per crossing, no flapping while hovering, resolution once."""

from __future__ import annotations

import numpy as np

from streams.runtime.records import ScoredBatch, Scores
from streams.settings import Settings
from streams.state.alerts import AlertEngine, Episode, default_rules


def _batch(values: list[float], battery: str = "BAT_A", start: int = 0) -> ScoredBatch:
    records = [{"battery_id": battery, "event_id": f"e{start + i}", "timestamp": 1_000 * (start + i),
                "soc": float(v), "soh": 90.0, "temperature": 25.0} for i, v in enumerate(values)]
    n = len(values)
    scores = Scores(rul_p50=np.full(n, 800.0), rul_p10=np.full(n, 700.0), rul_p90=np.full(n, 900.0),
                    failure_probability=np.zeros(n), anomaly_score=np.zeros(n))
    return ScoredBatch.of(records, scores)


def _engine() -> AlertEngine:
    return AlertEngine(default_rules(Settings()), debounce=3)


def test_crossing_and_hovering_opens_once_and_resolves_once() -> None:
    engine = _engine()
    # falls below 15 %, hovers around it (14.9 / 15.1 …) for a long time, then recovers past 17 %
    soc = [30, 20, 16, 14.5, 14.2, 14.0] + [14.9, 15.1] * 20 + [16.0, 18.0, 19.0, 20.0, 25.0]
    alerts = []
    for i in range(0, len(soc), 7):  # in several batches, as a stream would deliver them
        alerts += engine.evaluate(_batch(soc[i:i + 7], start=i))
    assert [(a["rule"], a["status"]) for a in alerts] == [("low_soc", "OPENED"), ("low_soc", "RESOLVED")]
    opened, resolved = alerts
    assert opened["alert_id"] == resolved["alert_id"]
    assert opened["opened_at"] == 5_000  # third consecutive reading below 15 %
    assert resolved["resolved_at"] == 1_000 * (len(soc) - 2)  # third reading above 17 %
    assert resolved["threshold"] == 17.0 and opened["severity"] == "WARNING"


def test_brief_dips_do_not_open_an_episode() -> None:
    engine = _engine()
    assert engine.evaluate(_batch([20, 14, 20, 14, 14, 20, 14, 20])) == []
    assert engine.open_count() == 0


def test_restore_continues_an_episode_opened_elsewhere() -> None:
    engine = _engine()
    engine.episodes.put(0, "BAT_A/low_soc", Episode("a-1", 7, 0))  # as restored from the changelog
    alerts = engine.evaluate(_batch([10, 12, 14, 18, 19, 20]))
    assert [(a["alert_id"], a["status"]) for a in alerts] == [("a-1", "RESOLVED")]


def test_a_redelivery_the_state_already_took_opens_no_second_episode() -> None:
    """The state restored with a partition can be ahead of the committed offsets (it is durable
    before the ack, offsets are committed later): the new owner is handed readings the state
    already took. Counted again, a redelivery starting between the first bad readings would open
    a second episode (another opened_at, another alert id) for the same crossing."""
    soc = [30, 14, 13, 12, 11, 10, 20, 21, 22, 30]
    first = _engine()
    alerts = first.evaluate(_batch(soc))
    assert [(a["status"], a["opened_at"]) for a in alerts] == [("OPENED", 3_000), ("RESOLVED", 3_000)]
    redelivered = _batch(soc[2:], start=2)  # from an offset between the first bad readings

    counted_again = _engine()
    assert [a["opened_at"] for a in counted_again.evaluate(redelivered)
            if a["status"] == "OPENED"] == [4_000]  # what skipping prevents: a second episode

    new_owner = _engine()  # restored: the episode is over (its state was deleted), nothing pending
    redelivered.taken = np.zeros(len(redelivered), dtype=bool)  # the battery's state took them all
    assert new_owner.evaluate(redelivered) == []
    fresh = _batch([14, 13, 12, 20, 21, 22], start=10)  # a new crossing after them: one episode
    fresh.taken = np.ones(len(fresh), dtype=bool)
    assert [(a["status"], a["opened_at"]) for a in new_owner.evaluate(fresh)] == \
        [("OPENED", 12_000), ("RESOLVED", 12_000)]


def test_a_duplicate_reading_does_not_count_twice_towards_the_debounce() -> None:
    engine = _engine()
    batch = _batch([14, 14, 13], start=0)
    batch.taken = np.array([True, False, True])  # the second is the first again (redelivered)
    assert engine.evaluate(batch) == []  # two distinct bad readings: not yet three
    assert [a["status"] for a in engine.evaluate(_batch([12], start=3))] == ["OPENED"]


def test_each_rule_fires_on_its_signal() -> None:
    engine = _engine()
    batch = _batch([50.0] * 3)
    batch.temperature[:] = 65.0
    batch.scores.failure_probability[:] = 0.9
    batch.scores.rul_p50[:] = 50.0
    batch.scores.anomaly_score[:] = 0.95
    batch.fault_score[:] = 0.6
    rules = {a["rule"] for a in engine.evaluate(batch)}
    assert rules == {"over_temperature", "failure_risk", "low_rul", "anomaly", "battery_fault"}


def test_the_battery_fault_rule_follows_the_model_cards_thresholds() -> None:
    """The rule opens on the twin's fault score at the thresholds the worker takes from the model
    card (retune), and resolves below the clear level only."""
    engine = _engine()
    engine.retune("battery_fault", 0.2, 0.1)
    batch = _batch([50.0] * 3)
    batch.fault_score[:] = 0.25  # below the default 0.5, above the card's 0.2
    opened = [a for a in engine.evaluate(batch) if a["rule"] == "battery_fault"]
    assert [a["status"] for a in opened] == ["OPENED"] and "battery fault score 0.25" in opened[0]["message"]
    between = _batch([50.0] * 3, start=3)
    between.fault_score[:] = 0.15  # between clear and open: stays open
    assert [a for a in engine.evaluate(between) if a["rule"] == "battery_fault"] == []
    below = _batch([50.0] * 3, start=6)
    below.fault_score[:] = 0.05
    assert [a["status"] for a in engine.evaluate(below) if a["rule"] == "battery_fault"] == ["RESOLVED"]


def _readings(batteries: list[str], t_ms: int) -> list[dict]:
    return [{"battery_id": b, "event_id": f"{b}-{t_ms}", "timestamp": t_ms, "soc": 50.0,
             "soh": 90.0, "temperature": 25.0} for b in batteries]


def _gap_run(engine: AlertEngine, schedule: list[list[str]], step_ms: int = 1000,
             start_ms: int = 1_700_000_000_000, skew: dict[str, int] | None = None) -> list[dict]:
    """Feed one batch per step: the batteries in ``schedule[k]`` report at step k (one partition)."""
    out = []
    for k, batteries in enumerate(schedule):
        t = start_ms + k * step_ms
        records = [dict(r, timestamp=r["timestamp"] + (skew or {}).get(r["battery_id"], 0))
                   for r in _readings(batteries, t)]
        out += engine.watch_silence(ScoredBatch.of(records, Scores()), now_ms=t + 10_000)
    return out


def test_a_silent_battery_opens_one_gap_alert_and_resolves_it_when_it_reports() -> None:
    engine = AlertEngine([], silence_s=30)
    schedule = [["A", "B"]] * 10 + [["A"]] * 45 + [["A", "B"]] * 5
    alerts = _gap_run(engine, schedule)
    assert [(a["battery_id"], a["rule"], a["status"]) for a in alerts] == [
        ("B", "telemetry_gap", "OPENED"), ("B", "telemetry_gap", "RESOLVED")]
    opened, resolved = alerts
    assert opened["alert_id"] == resolved["alert_id"]
    assert opened["event_id"] == "B-1700000009000"  # its last reading before the silence
    assert opened["opened_at"] == 1_700_000_009_000 + 30_000
    assert resolved["value"] == 46.0 and resolved["threshold"] == 30.0
    assert "46 s gap" in resolved["message"] and "no telemetry" in opened["message"]


def test_gap_rule_ignores_late_clocks_and_short_gaps_and_can_be_off() -> None:
    # B's clock runs 5 minutes late but it reports every second: never silent.
    schedule = [["A", "B"]] * 100
    assert _gap_run(AlertEngine([], silence_s=30), schedule, skew={"B": -300_000}) == []
    # a gap shorter than the threshold
    schedule = [["A", "B"]] * 5 + [["A"]] * 25 + [["A", "B"]] * 5
    assert _gap_run(AlertEngine([], silence_s=30), schedule) == []
    # off
    schedule = [["A", "B"]] * 5 + [["A"]] * 100
    assert _gap_run(AlertEngine([], silence_s=0), schedule) == []


def test_a_restored_gap_episode_resolves_on_the_next_reading() -> None:
    engine = AlertEngine([], silence_s=30)
    engine.episodes.put(0, "B/telemetry_gap", Episode("gap-1", 1_700_000_000_000, 0))
    alerts = _gap_run(engine, [["A"]] * 3 + [["A", "B"]], start_ms=1_700_000_100_000)
    assert [(a["alert_id"], a["status"]) for a in alerts] == [("gap-1", "RESOLVED")]
    assert engine.open_count() == 0


def test_episode_changes_reach_the_changelog_and_a_new_owner_continues_them() -> None:
    """What one engine writes (opened episodes, debounce runs, deletions) is what another one
    reads back: the state survives a rebalance."""
    import json

    first = _engine()
    first.evaluate(_batch([10, 10, 10, 50]))  # opens low_soc, then one good reading (pending 1)
    log: list[tuple[str, bytes | None, bytes, int]] = []
    assert first.flush_changes(lambda topic, value, key, partition: log.append(
        (topic, value, key, partition))) == 1
    topic, value, key, partition = log[0]
    assert (topic, key, partition) == ("evtwin-score-alerts-changelog", b"BAT_A/low_soc", 0)
    alert_id, _, pending = json.loads(value or b"")
    assert pending == 1 and first.flush_changes(lambda *a, **k: None) == 0  # nothing new

    second = _engine()
    second.episodes.put(0, key.decode(), Episode.from_json(json.loads(value or b"")))
    alerts = second.evaluate(_batch([50, 50]))  # two more good readings complete the debounce
    assert [(a["alert_id"], a["status"]) for a in alerts] == [(alert_id, "RESOLVED")]
    deleted: list[bytes | None] = []
    second.flush_changes(lambda topic, value, key, partition: deleted.append(value))
    assert deleted == [None]  # a tombstone: the key leaves the compacted changelog
