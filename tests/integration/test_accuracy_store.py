"""The online-accuracy tables on the real embedded PostgreSQL: a batch of pairs lands once in
ev_accuracy_pairs and adds exactly its new pairs to the bucket rows (per battery and for the fleet,
battery_id '*'); the same batch again changes no row; episodes never move back in time; what the
sink reads back at start-up equals what was written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from connectors.accuracy_store import AccuracyWriter
from tests.support.database import drop_database, fresh_database

T0 = 1_764_720_000_000  # 2025-12-03T00:00:00Z, a bucket start (ms)
S = 1000


def pair(battery: str, event: str, t_ms: int, rul: float, true_rul: float, p10: float, p90: float,
         delay_s: float | None = None, failure: float | None = None, label: bool | None = None) -> tuple[Any, ...]:
    return (t_ms, battery, event, rul, p10, p90, true_rul, abs(rul - true_rul), p10 <= true_rul <= p90,
            delay_s is not None, "cooling_failure" if delay_s is not None else "none", delay_s, failure, label)


@pytest.fixture
def db(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    url = fresh_database(stack[1].database_url, "evtwin_accuracy")
    yield url
    drop_database(url)


RUL_COLUMNS = ("pairs, rul_abs_error_sum, rul_in_band, fault_detections, fault_detection_delay_s_sum, "
               "rul_mae_cycles, rul_band_coverage")
FAILURE_COLUMNS = "failure_pairs, failure_probability_sum, failure_observed, failure_sq_error_sum, failure_brier"


def rows(url: str, columns: str = RUL_COLUMNS) -> dict[tuple[int, str], tuple[Any, ...]]:
    """The ev_accuracy rows by (bucket ms, battery): ``columns``."""
    with psycopg.connect(url) as conn:
        got = conn.execute(
            f"SELECT (extract(epoch FROM bucket) * 1000)::int8, battery_id, {columns} FROM ev_accuracy").fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in got}


def test_pairs_add_to_their_buckets_once(db: str) -> None:
    first = [pair("B1", "a", T0, 100, 90, 80, 120),                    # error 10, in band
             pair("B1", "b", T0 + 30 * S, 150, 200, 140, 190),        # error 50, outside
             pair("B2", "c", T0 + 70 * S, 300, 320, 250, 350, 12.0)]  # error 20, in band, detected 12 s
    with AccuracyWriter(db, bucket_s=60) as writer:
        assert writer.write(first) == {"a", "b", "c"}
        assert writer.migration is not None and writer.migration.flavour == "postgresql"
        want = {
            (T0, "B1"): (2, 60.0, 2 - 1, 0, 0.0, 30.0, 0.5),
            (T0, "*"): (2, 60.0, 1, 0, 0.0, 30.0, 0.5),
            (T0 + 60 * S, "B2"): (1, 20.0, 1, 1, 12.0, 20.0, 1.0),
            (T0 + 60 * S, "*"): (1, 20.0, 1, 1, 12.0, 20.0, 1.0),
        }
        assert rows(db) == want
        # The same batch again, plus one new pair in the first bucket: only the new one counts.
        again = [*first, pair("B2", "d", T0 + 10 * S, 400, 430, 350, 450)]
        assert writer.write(again) == {"d"}
        want[(T0, "*")] = (3, 90.0, 2, 0, 0.0, 30.0, 2 / 3)
        want[(T0, "B2")] = (1, 30.0, 1, 0, 0.0, 30.0, 1.0)
        assert rows(db) == want
        assert writer.write(again) == set() and rows(db) == want
        assert writer.rows_written["ev_accuracy_pairs"] == 4
        # What the sink reads back at start-up: the window's buckets up to the fleet's newest.
        recent = {(r[0], r[1]): r[2:] for r in writer.recent(60)}
        assert recent == {(T0 + 60 * S, "B2"): (1, 20.0, 1, 1, 12.0, 0, 0.0, 0, 0.0),
                          (T0 + 60 * S, "*"): (1, 20.0, 1, 1, 12.0, 0, 0.0, 0, 0.0)}
        assert len(writer.recent(120)) == 5


def test_episodes_move_forward_only(db: str) -> None:
    with AccuracyWriter(db, bucket_s=60) as writer:
        writer.write([], [("B1", "cooling_failure", T0, T0 + 12 * S, 12.0, T0 + 20 * S)])
        writer.write([], [("B1", "none", None, None, None, T0 + 5 * S)])   # older: ignored
        assert writer.episodes() == [("B1", "cooling_failure", T0, T0 + 12 * S, T0 + 20 * S)]
        writer.write([], [("B1", "none", T0, T0 + 12 * S, 12.0, T0 + 30 * S)])
        assert writer.episodes() == [("B1", "none", T0, T0 + 12 * S, T0 + 30 * S)]


def test_pairs_are_pruned_on_plain_postgresql(db: str) -> None:
    with AccuracyWriter(db, bucket_s=60) as writer:
        writer.write([pair("B1", "old", T0, 1, 1, 0, 2), pair("B1", "new", T0 + 20 * 86400 * S, 1, 1, 0, 2)])
        assert writer.prune_pairs(14 * 86400) == 1
        with psycopg.connect(db) as conn:
            assert conn.execute("SELECT event_id FROM ev_accuracy_pairs").fetchall() == [("new",)]
        assert len(rows(db)) == 4  # the bucket rows stay


def test_failure_sums_add_up_to_the_calibration_of_a_window(db: str) -> None:
    def failure_rows() -> dict[tuple[int, str], tuple[Any, ...]]:
        return rows(db, FAILURE_COLUMNS)

    batch = [pair("B1", "a", T0, 1, 1, 0, 2, failure=0.2, label=False),       # (0.2 - 0)^2 = 0.04
             pair("B1", "b", T0 + S, 1, 1, 0, 2, failure=0.9, label=True),    # (0.9 - 1)^2 = 0.01
             pair("B2", "c", T0 + 2 * S, 1, 1, 0, 2, failure=0.5, label=True),  # 0.25
             pair("B2", "d", T0 + 3 * S, 1, 1, 0, 2),                         # neither half: not counted
             pair("B2", "e", T0 + 4 * S, 1, 1, 0, 2, failure=0.3)]            # no label: not counted
    with AccuracyWriter(db, bucket_s=60) as writer:
        assert len(writer.write(batch)) == 5
        assert failure_rows() == {
            (T0, "B1"): (2, pytest.approx(1.1), 1, pytest.approx(0.05), pytest.approx(0.025)),
            (T0, "B2"): (1, pytest.approx(0.5), 1, pytest.approx(0.25), pytest.approx(0.25)),
            (T0, "*"): (3, pytest.approx(1.6), 2, pytest.approx(0.30), pytest.approx(0.10)),
        }
        with psycopg.connect(db) as conn:
            stored = conn.execute("SELECT event_id, failure_probability, failure_within_horizon "
                                  "FROM ev_accuracy_pairs ORDER BY event_id").fetchall()
        assert stored[2:] == [("c", 0.5, True), ("d", None, None), ("e", 0.3, None)]
        # a later pair in the same bucket adds to the sums; the bucket's Brier score follows
        writer.write([pair("B1", "f", T0 + 5 * S, 1, 1, 0, 2, failure=0.0, label=False)])
        assert failure_rows()[(T0, "*")] == (4, pytest.approx(1.6), 2, pytest.approx(0.30), pytest.approx(0.075))
        assert writer.write(batch) == set() and failure_rows()[(T0, "*")][0] == 4  # a replay: no change
        recent = {(r[0], r[1]): r[7:] for r in writer.recent(60)}
        assert recent[(T0, "*")] == (4, pytest.approx(1.6), 2, pytest.approx(0.30))
