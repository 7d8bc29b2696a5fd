"""The online-accuracy sink on the real embedded PostgreSQL, driven batch by batch as the sink runner
drives it: pairs reach ev_accuracy with the sums computed here by hand from the records, the
gauges equal the window's figures, a restart (a new sink on the same tables) restores the gauges
and a replay of every batch changes no row and counts nothing; a fault episode is stored with its
delay and survives the restart; a flush that fails while the database is down keeps its pairs, and
the same batch offered again after the outage counts each of them once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from connectors.embedded import postgres_server
from connectors.embedded.postgres_server import PostgresServer
from connectors.embedded.process import free_port
from connectors.endpoints import Endpoints
from connectors.timescale import DatabaseUnavailableError
from streams.settings import Settings
from streams.sinks.accuracy import AccuracySink
from streams.sinks.base import SinkBatch
from streams.topics import GROUND_TRUTH, PREDICTIONS
from tests.support.database import drop_database, fresh_database
from tests.support.sink_records import prediction

T0 = 1_764_720_000_000  # 2025-12-03T00:00:00Z, a bucket start (ms)
S = 1000


def truth(battery: str, event_id: str, ts: int, true_rul: float, fault: str = "none",
          failure: bool = False) -> dict[str, Any]:
    return {"event_id": event_id, "battery_id": battery, "timestamp": ts, "true_soh": 90.0,
            "true_rul_cycles": true_rul, "failure_within_horizon": failure, "fault": fault,
            "capacity_ah": 100.0, "r0_ohm": 0.05}


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
def db(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    url = fresh_database(stack[1].database_url, "evtwin_accsink")
    yield url
    drop_database(url)


def sink(db: str, state_dir: Path, **settings_: Any) -> AccuracySink:
    settings = Settings(state_dir=state_dir, accuracy_bucket_s=60, accuracy_window_s=120, **settings_)
    s = AccuracySink(settings, Endpoints(kafka_bootstrap_servers="unused:9092", database_url=db, mqtt_url=None,
                                         schema_registry_url=None, mlflow_tracking_uri=None))
    s.setup()
    return s


def offer(s: AccuracySink, topic: str, records: list[dict[str, Any]]) -> None:
    """What the runner does with one fetch: write, flush (then it would acknowledge), report."""
    s.write(SinkBatch(topic, records))
    s.flush()
    s.report()


def test_rows_and_gauges_equal_the_records_and_survive_a_restart_and_a_replay(db: str, tmp_path: Path) -> None:
    b1, b2 = "ACS_B1", "ACS_B2"
    # (battery, t from T0 in s, predicted P50, P10, P90, true RUL, anomaly score, true fault)
    readings = [
        (b1, 0, 100.0, 80.0, 120.0, 90.0, 0.1, "none"),              # error 10, in band
        (b1, 30, 150.0, 140.0, 190.0, 200.0, 0.1, "none"),           # error 50, outside
        (b2, 70, 300.0, 250.0, 350.0, 320.0, 0.1, "cooling_failure"),  # error 20, in; the onset
        (b2, 95, 310.0, 250.0, 350.0, 300.0, 0.9, "cooling_failure"),  # error 10, in; flagged 25 s after
        (b1, 130, 120.0, 100.0, 140.0, 160.0, 0.1, "none"),          # error 40, outside
    ]
    preds, truths = [], []
    for b, t, rul, p10, p90, true_rul, anomaly, fault in readings:
        p = prediction(b, T0 + t * S, rul_cycles=rul, rul_p10=p10, rul_p90=p90, anomaly_score=anomaly,
                       fault_flag=anomaly > 0.5)  # the twin's flag, as the worker writes it
        preds.append(p)
        truths.append(truth(b, p["event_id"], T0 + t * S, true_rul, fault))
    pairs_before = value("evtwin_online_pairs_total") or 0.0
    delays_before = value("evtwin_online_fault_detection_delay_seconds_count") or 0.0

    first = sink(db, tmp_path)
    offer(first, GROUND_TRUTH, truths[:3])   # truths first for these …
    offer(first, PREDICTIONS, preds)          # … predictions first for the others
    offer(first, GROUND_TRUTH, truths[3:])
    first.close()

    with psycopg.connect(db) as conn:
        got = {(int(t), b): (n, e, i, d, ds) for t, b, n, e, i, d, ds in conn.execute(
            "SELECT (extract(epoch FROM bucket) * 1000)::int8, battery_id, pairs, rul_abs_error_sum, "
            "rul_in_band, fault_detections, fault_detection_delay_s_sum FROM ev_accuracy")}
        episode = conn.execute("SELECT fault, detection_delay_s FROM ev_accuracy_faults "
                               "WHERE battery_id = %s", (b2,)).fetchone()
    m = 60 * S
    assert got == {
        (T0, b1): (2, 60.0, 1, 0, 0.0), (T0, "*"): (2, 60.0, 1, 0, 0.0),
        (T0 + m, b2): (2, 30.0, 2, 1, 25.0), (T0 + m, "*"): (2, 30.0, 2, 1, 25.0),
        (T0 + 2 * m, b1): (1, 40.0, 0, 0, 0.0), (T0 + 2 * m, "*"): (1, 40.0, 0, 0, 0.0),
    }
    assert episode == ("cooling_failure", 25.0)

    def gauges() -> tuple[Any, ...]:
        return (value("evtwin_online_rul_mae_cycles"), value("evtwin_online_rul_band_coverage"),
                value("evtwin_online_window_pairs"),
                value("evtwin_online_battery_rul_mae_cycles", battery_id=b1),
                value("evtwin_online_battery_window_pairs", battery_id=b2),
                value("evtwin_online_battery_fault_detection_delay_seconds", battery_id=b2))

    # The window: the 2 buckets up to the newest (T0+2 min): the pairs at 70, 95 and 130 s.
    want = (pytest.approx(70 / 3), pytest.approx(2 / 3), 3.0, 40.0, 2.0, 25.0)
    assert gauges() == want
    assert value("evtwin_online_pairs_total") == pairs_before + 5
    assert value("evtwin_online_fault_detection_delay_seconds_count") == delays_before + 1

    # A restart: a new sink on the same tables restores the window and the episode ...
    second = sink(db, tmp_path)
    assert gauges() == want
    # ... and a replay of every batch (its group re-reads them) changes no row and counts nothing.
    offer(second, PREDICTIONS, preds)
    offer(second, GROUND_TRUTH, truths)
    second.close()
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT sum(pairs) FROM ev_accuracy WHERE battery_id = '*'").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM ev_accuracy_pairs").fetchone() == (5,)
    assert gauges() == want
    assert value("evtwin_online_pairs_total") == pairs_before + 5
    assert value("evtwin_online_fault_detection_delay_seconds_count") == delays_before + 1


def test_the_failure_probability_is_scored_against_the_truths_label(db: str, tmp_path: Path) -> None:
    # (t from T0 in s, predicted failure probability, the truth's label); all in the window
    readings = [(0, 0.10, False), (20, 0.30, False), (40, 0.80, True), (65, 0.20, True), (90, 0.05, False)]
    preds = [prediction("ACS_FAIL", T0 + t * S, failure_probability=q) for t, q, _ in readings]
    truths = [truth("ACS_FAIL", p["event_id"], p["timestamp"], 900.0, failure=y)
              for p, (_, _, y) in zip(preds, readings, strict=True)]
    first = sink(db, tmp_path)
    offer(first, PREDICTIONS, preds)
    offer(first, GROUND_TRUTH, truths)
    first.close()
    n = len(readings)
    rate = sum(y for _, _, y in readings) / n
    want = (pytest.approx(sum((q - y) ** 2 for _, q, y in readings) / n), pytest.approx(rate * (1 - rate)),
            pytest.approx(sum(q for _, q, _ in readings) / n), pytest.approx(rate))

    def gauges() -> tuple[Any, ...]:
        return tuple(value(f"evtwin_online_failure_{name}") for name in
                     ("brier", "baseline_brier", "mean_probability", "observed_rate"))

    assert gauges() == want
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT sum(failure_pairs), sum(failure_observed) FROM ev_accuracy "
                            "WHERE battery_id = '*'").fetchone() == (n, 2)
    second = sink(db, tmp_path)  # restored from the table at start-up
    second.close()
    assert gauges() == want


def test_predictions_without_a_finite_rul_are_counted_not_joined(db: str, tmp_path: Path) -> None:
    s = sink(db, tmp_path)
    before = value("evtwin_online_unusable_predictions_total") or 0.0
    bad = prediction("ACS_NAN", T0, rul_cycles=float("nan"))
    offer(s, PREDICTIONS, [bad])
    offer(s, GROUND_TRUTH, [truth("ACS_NAN", bad["event_id"], T0, 100.0)])
    s.close()
    assert value("evtwin_online_unusable_predictions_total") == before + 1
    assert s.join.pending() == 1  # the truth waits; no pair, no row
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ev_accuracy").fetchone() == (0,)


@pytest.fixture
def private_postgres(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone, restartable on the same port (as in test_timescale_outage)."""
    monkeypatch.setattr(postgres_server, "port_for", lambda requested, *args: requested or free_port())
    settings = Settings(state_dir=state_dir)
    server = PostgresServer(state_dir / "postgres", 0, settings.postgres_bin_dir, settings.postgres_os_user)
    server.start()
    try:
        server.wait_ready(30)
        server.requested_port = server.port
        yield server
    finally:
        server.stop()


def test_a_flush_that_fails_keeps_its_pairs_for_the_same_batch_again(
        private_postgres: PostgresServer, tmp_path: Path) -> None:
    db = private_postgres.url
    s = sink(db, tmp_path, sink_retry_s=1.0)
    preds = [prediction("ACS_OUT", T0 + k * S, rul_cycles=100.0 + k) for k in range(40)]
    truths = [truth("ACS_OUT", p["event_id"], p["timestamp"], 100.0) for p in preds]
    offer(s, GROUND_TRUTH, truths)
    before = value("evtwin_online_pairs_total") or 0.0
    private_postgres.stop()
    s.write(SinkBatch(PREDICTIONS, preds))
    with pytest.raises(DatabaseUnavailableError):
        s.flush()  # the runner does not acknowledge the batch and offers it again later
    private_postgres.start()
    private_postgres.wait_ready(30)
    offer(s, PREDICTIONS, preds)
    s.close()
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT pairs, rul_abs_error_sum FROM ev_accuracy WHERE battery_id = '*'").fetchone() \
            == (40, float(sum(range(40))))
    assert value("evtwin_online_pairs_total") == before + 40
    assert s.join.pending() == 0 and s.join.expired == {"prediction": 0, "truth": 0}
