"""The online-accuracy tables (migrations 0005/0006/0009): joined pairs, their sums per bucket, faults.

:class:`AccuracyWriter` writes a batch of pairs in one transaction, idempotently and without
counting anything twice: the pairs go to ``ev_accuracy_pairs`` (``ON CONFLICT DO NOTHING`` on
``(time, battery_id)``); only the pairs that were *new* there are added to their bucket rows of
``ev_accuracy`` (one per battery and bucket, and one for the fleet, ``battery_id = '*'``), by an
additive upsert; the changed fault episodes are upserted into ``ev_accuracy_faults``. A replay after
a crash, a rebalance or a retried batch therefore changes no row. Retries while the database is
down, migrations at connect and the counters come from :class:`connectors.timescale.TimescaleWriter`.

Pairs are rows ``(time_ms, battery_id, event_id, rul_cycles, rul_p10, rul_p90, true_rul_cycles,
rul_abs_error, in_band, flagged, fault, detection_delay_s, failure_probability,
failure_within_horizon)`` (the last two ``None`` when a half lacked them); episodes ``(battery_id, fault,
onset_ms, detected_ms, detection_delay_s, last_truth_ms)`` (times in epoch milliseconds, UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from connectors.timescale import TimescaleWriter

FLEET = "*"
"""``battery_id`` of the fleet-wide rows of ``ev_accuracy``."""
PAIR_COLUMNS = ("time", "battery_id", "event_id", "rul_cycles", "rul_p10", "rul_p90", "true_rul_cycles",
                "rul_abs_error", "in_band", "flagged", "fault", "detection_delay_s", "failure_probability",
                "failure_within_horizon")
_PAIR_TYPES = ("int8", "text", "text", "float8", "float8", "float8", "float8", "float8", "bool", "bool",
               "text", "float8", "float8", "bool")
_MS = "TIMESTAMPTZ 'epoch' + ({}) * INTERVAL '1 millisecond'"

INSERT_PAIRS = (
    f"INSERT INTO ev_accuracy_pairs ({', '.join(PAIR_COLUMNS)}) "
    f"SELECT {_MS.format('u.t')}, " + ", ".join(f"u.c{i}" for i in range(1, len(PAIR_COLUMNS)))
    + " FROM unnest(" + ", ".join(f"%s::{t}[]" for t in _PAIR_TYPES) + ") AS u(t, "
    + ", ".join(f"c{i}" for i in range(1, len(PAIR_COLUMNS))) + ") "
    "ON CONFLICT (time, battery_id) DO NOTHING "
    "RETURNING (extract(epoch FROM time) * 1000)::int8, battery_id, rul_abs_error, in_band, "
    "detection_delay_s, failure_probability, failure_within_horizon, event_id"
)
# The new pairs' sums per (bucket, battery) and per bucket for the fleet, added to the rows.
ADD_TO_BUCKETS = (
    "INSERT INTO ev_accuracy AS a (bucket, battery_id, pairs, rul_abs_error_sum, rul_in_band, "
    "fault_detections, fault_detection_delay_s_sum, rul_mae_cycles, rul_band_coverage, failure_pairs, "
    "failure_probability_sum, failure_observed, failure_sq_error_sum, failure_brier) "
    f"SELECT {_MS.format('b')}, k, n, e, i, d, ds, e / n, i::float8 / n, fn, fp, fy, fs, "
    "       CASE WHEN fn > 0 THEN fs / fn END FROM ("
    f"  SELECT b, CASE WHEN GROUPING(k) = 1 THEN '{FLEET}' ELSE k END AS k, "
    "         count(*) AS n, sum(e) AS e, count(*) FILTER (WHERE i) AS i, "
    "         count(d)::int AS d, coalesce(sum(d), 0) AS ds, "
    "         count(*) FILTER (WHERE known) AS fn, coalesce(sum(p) FILTER (WHERE known), 0) AS fp, "
    "         count(*) FILTER (WHERE known AND y) AS fy, "
    "         coalesce(sum((p - y::int) ^ 2) FILTER (WHERE known), 0) AS fs "
    "  FROM (SELECT u.t - u.t %% %(bucket_ms)s AS b, u.k, u.e, u.i, u.d, u.p, u.y, "
    "               (u.p IS NOT NULL AND u.y IS NOT NULL) AS known FROM "
    "        unnest(%(t)s::int8[], %(k)s::text[], %(e)s::float8[], %(i)s::bool[], %(d)s::float8[], "
    "               %(p)s::float8[], %(y)s::bool[]) AS u(t, k, e, i, d, p, y)) x "
    "  GROUP BY GROUPING SETS ((b, k), (b))) s "
    "ON CONFLICT (bucket, battery_id) DO UPDATE SET "
    "pairs = a.pairs + EXCLUDED.pairs, "
    "rul_abs_error_sum = a.rul_abs_error_sum + EXCLUDED.rul_abs_error_sum, "
    "rul_in_band = a.rul_in_band + EXCLUDED.rul_in_band, "
    "fault_detections = a.fault_detections + EXCLUDED.fault_detections, "
    "fault_detection_delay_s_sum = a.fault_detection_delay_s_sum + EXCLUDED.fault_detection_delay_s_sum, "
    "rul_mae_cycles = (a.rul_abs_error_sum + EXCLUDED.rul_abs_error_sum) / (a.pairs + EXCLUDED.pairs), "
    "rul_band_coverage = (a.rul_in_band + EXCLUDED.rul_in_band)::float8 / (a.pairs + EXCLUDED.pairs), "
    "failure_pairs = a.failure_pairs + EXCLUDED.failure_pairs, "
    "failure_probability_sum = a.failure_probability_sum + EXCLUDED.failure_probability_sum, "
    "failure_observed = a.failure_observed + EXCLUDED.failure_observed, "
    "failure_sq_error_sum = a.failure_sq_error_sum + EXCLUDED.failure_sq_error_sum, "
    "failure_brier = (a.failure_sq_error_sum + EXCLUDED.failure_sq_error_sum) "
    "                / nullif(a.failure_pairs + EXCLUDED.failure_pairs, 0), "
    "updated_at = now()"
)
UPSERT_EPISODE = (
    "INSERT INTO ev_accuracy_faults AS f (battery_id, fault, onset, detected_at, detection_delay_s, "
    f"last_truth) VALUES (%s, %s, {_MS.format('%s::int8')}, {_MS.format('%s::int8')}, %s, "
    f"{_MS.format('%s::int8')}) ON CONFLICT (battery_id) DO UPDATE SET fault = EXCLUDED.fault, "
    "onset = EXCLUDED.onset, detected_at = EXCLUDED.detected_at, "
    "detection_delay_s = EXCLUDED.detection_delay_s, last_truth = EXCLUDED.last_truth, "
    "updated_at = now() WHERE f.last_truth <= EXCLUDED.last_truth"
)
_EPOCH_MS = "(extract(epoch FROM {}) * 1000)::int8"
SELECT_EPISODES = (
    f"SELECT battery_id, fault, {_EPOCH_MS.format('onset')}, {_EPOCH_MS.format('detected_at')}, "
    f"{_EPOCH_MS.format('last_truth')} FROM ev_accuracy_faults"
)
SELECT_RECENT = (
    f"SELECT {_EPOCH_MS.format('bucket')}, battery_id, pairs, rul_abs_error_sum, rul_in_band, "
    "fault_detections, fault_detection_delay_s_sum, failure_pairs, failure_probability_sum, "
    "failure_observed, failure_sq_error_sum FROM ev_accuracy "
    "WHERE bucket > (SELECT max(bucket) FROM ev_accuracy WHERE battery_id = %s) - %s * INTERVAL '1 second'"
)


class AccuracyWriter(TimescaleWriter):
    """Writes pairs, bucket sums and fault episodes (see the module docstring).

    Args:
        database_url: ``postgresql://user:password@host:port/database``.
        bucket_s: Width of the ``ev_accuracy`` buckets, s.
        **kwargs: As :class:`connectors.timescale.TimescaleWriter` (``retry_for_s``, …).
    """

    def __init__(self, database_url: str, *, bucket_s: int, **kwargs: Any) -> None:
        kwargs.setdefault("application_name", "evtwin-accuracy")
        super().__init__(database_url, **kwargs)
        self.bucket_ms = bucket_s * 1000
        self.rows_written.update(ev_accuracy_pairs=0, ev_accuracy=0, ev_accuracy_faults=0)

    def write(self, pairs: Sequence[tuple[Any, ...]],
              episodes: Sequence[tuple[Any, ...]] = ()) -> set[str]:
        """Store ``pairs`` and ``episodes`` in one transaction.

        Returns:
            The event ids of the pairs that were new (the others were stored before).

        Raises:
            DatabaseError: the database rejected the batch (nothing of it was written).
            DatabaseUnavailableError: the database stayed unreachable for ``retry_for_s``.
        """
        if not pairs and not episodes:
            return set()
        columns = [list(c) for c in zip(*pairs, strict=True)] if pairs else []

        def work(conn: psycopg.Connection) -> set[str]:
            new: list[tuple[Any, ...]] = []
            with conn.cursor() as cur:
                if pairs:
                    cur.execute(INSERT_PAIRS, columns)
                    new = cur.fetchall()
                    self._count(cur, "ev_accuracy_pairs")
                if new:
                    t, k, e, i, d, p, y, _ = (list(c) for c in zip(*new, strict=True))
                    cur.execute(ADD_TO_BUCKETS, {"bucket_ms": self.bucket_ms, "t": t, "k": k, "e": e,
                                                 "i": i, "d": d, "p": p, "y": y})
                    self._count(cur, "ev_accuracy")
                if episodes:
                    cur.executemany(UPSERT_EPISODE, episodes)
                    self._count(cur, "ev_accuracy_faults")
            return {row[7] for row in new}

        result: set[str] = self._run("write_accuracy", work)
        return result

    def episodes(self) -> list[tuple[Any, ...]]:
        """Every stored episode: ``(battery_id, fault, onset_ms, detected_ms, last_truth_ms)``."""
        rows: list[tuple[Any, ...]] = self._run(
            "read_episodes", lambda conn: conn.execute(SELECT_EPISODES).fetchall())
        return rows

    def recent(self, window_s: int) -> list[tuple[Any, ...]]:
        """The bucket rows of the last ``window_s`` before the fleet's newest bucket (inclusive):
        ``(bucket_ms, battery_id, pairs, abs_error_sum, in_band, detections, delay_s_sum,
        failure_pairs, failure_probability_sum, failure_observed, failure_sq_error_sum)`` (the
        fields of :class:`streams.state.rolling.Sums`, in order)."""
        rows: list[tuple[Any, ...]] = self._run(
            "read_recent", lambda conn: conn.execute(SELECT_RECENT, (FLEET, window_s)).fetchall())
        return rows

    def prune_pairs(self, keep_s: float) -> int:
        """Delete pairs older than ``keep_s`` before the newest one (plain PostgreSQL; TimescaleDB's
        retention policy does it there). Returns how many went."""
        def work(conn: psycopg.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM ev_accuracy_pairs WHERE time < "
                "(SELECT max(time) FROM ev_accuracy_pairs) - %s * INTERVAL '1 second'", (keep_s,))
            return max(cur.rowcount, 0)

        deleted: int = self._run("prune_pairs", work)
        return deleted


__all__ = ["FLEET", "PAIR_COLUMNS", "AccuracyWriter"]
