"""The online-accuracy job (issue 11, part 5): ``evtwin sink --kind accuracy``, group
``evtwin-sink-accuracy``.

It consumes ``ev.predictions.v1`` and ``ev.groundtruth.v1`` in one consumer group (both keyed by
battery, same partition count, so a battery's halves reach the same member), joins them on the
reading's event id (:class:`streams.state.accuracy.Join`, bounded per battery) and keeps, per
battery and fleet-wide, RUL MAE, P10-P90 band coverage, pair counts, fault-detection delays and the
failure probability's calibration (mean probability, observed rate, Brier score):

* in ``ev_accuracy`` (sums per ``EVTWIN_ACCURACY_BUCKET_S`` of event time; fleet rows have
  ``battery_id = '*'``), ``ev_accuracy_pairs`` (one row per pair) and ``ev_accuracy_faults`` (each
  battery's fault episode), written by :class:`connectors.accuracy_store.AccuracyWriter` in one
  transaction per flush, so a replay or a restart counts nothing twice;
* as ``evtwin_online_*`` metrics on the process's metrics endpoint, over the rolling window
  ``EVTWIN_ACCURACY_WINDOW_S`` (:class:`streams.state.rolling.Rolling`, seeded from the table at
  start-up).

Ground truth is outside input: a record that does not decode or fails
:func:`streams.sinks.groundtruth.truth_problem` goes to ``ev.groundtruth.dlq.v1``. A half that
waits for its partner when the process stops is not kept (its offset was committed): a restart
or a rebalance loses those few pairs, it never counts one twice.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from prometheus_client import Counter, Gauge, Histogram

from connectors.endpoints import Endpoints
from streams.errors import SinkError
from streams.settings import Settings
from streams.sinks.base import Sink, SinkBatch
from streams.sinks.database import SINK_DB_ERRORS, SINK_ROWS, CounterDeltas
from streams.sinks.groundtruth import truth_problem
from streams.state.accuracy import PREDICTION, TRUTH, Episode, Join, Pair, anomaly_flag
from streams.state.rolling import FLEET, Rolling, Sums
from streams.topics import GROUND_TRUTH, GROUND_TRUTH_DLQ, PREDICTIONS

_WINDOW = "over the rolling window (EVTWIN_ACCURACY_WINDOW_S of event time)"
MAE = Gauge("evtwin_online_rul_mae_cycles", f"Fleet RUL mean absolute error {_WINDOW}, equivalent full cycles")
COVERAGE = Gauge("evtwin_online_rul_band_coverage",
                 f"Fleet fraction (0-1) of true RULs inside the predicted P10-P90 band {_WINDOW}")
WINDOW_PAIRS = Gauge("evtwin_online_window_pairs", f"Fleet predictions joined with their ground truth {_WINDOW}")
BATTERY_MAE = Gauge("evtwin_online_battery_rul_mae_cycles",
                    f"RUL mean absolute error of one battery {_WINDOW}, equivalent full cycles", ["battery_id"])
BATTERY_COVERAGE = Gauge("evtwin_online_battery_rul_band_coverage",
                         f"Fraction (0-1) of one battery's true RULs inside its P10-P90 band {_WINDOW}",
                         ["battery_id"])
BATTERY_PAIRS = Gauge("evtwin_online_battery_window_pairs",
                      f"One battery's predictions joined with their ground truth {_WINDOW}", ["battery_id"])
BATTERY_DELAY = Gauge("evtwin_online_battery_fault_detection_delay_seconds",
                      "Event time from the onset of the battery's last detected fault to its first flagged "
                      "prediction, s", ["battery_id"])
DELAY = Histogram("evtwin_online_fault_detection_delay_seconds",
                  "Event time from a fault's onset (first truth with it) to the first flagged prediction, s",
                  buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400,
                           30 * 86400))
FAILURE_BRIER = Gauge("evtwin_online_failure_brier",
                      f"Fleet Brier score of the failure probability against the truth's label {_WINDOW}, 0-1")
FAILURE_BASELINE_BRIER = Gauge("evtwin_online_failure_baseline_brier",
                               "Fleet Brier score of always predicting the observed failure rate, rate * (1 - "
                               f"rate), {_WINDOW}: a useful probability scores below it")
FAILURE_MEAN = Gauge("evtwin_online_failure_mean_probability",
                     f"Fleet mean predicted failure probability {_WINDOW}, 0-1")
FAILURE_RATE = Gauge("evtwin_online_failure_observed_rate",
                     f"Fleet share of readings whose truth says failure within the horizon {_WINDOW}, 0-1")
PAIRS = Counter("evtwin_online_pairs", "Predictions joined with their ground truth (each reading once)")
UNMATCHED = Counter("evtwin_online_unmatched",
                    "Predictions or truths dropped without a partner (join window passed, or the "
                    "per-battery cap)", ["topic"])
UNUSABLE = Counter("evtwin_online_unusable_predictions",
                   "Predictions without a finite RUL, band or anomaly score (not joined)")
ONSETS = Counter("evtwin_online_fault_onsets", "Fault episodes that started, per the ground truth")
PENDING = Gauge("evtwin_online_pending", "Predictions and truths waiting for their partner")

_PREDICTION_NUMBERS = ("rul_cycles", "rul_p10", "rul_p90", "anomaly_score")
SWEEP_S = 5.0
"""How often every battery's gauges are recomputed (the window moves with the fleet's time)."""
PAIRS_KEPT_S = 14 * 86400.0
"""How long pairs are kept on plain PostgreSQL (TimescaleDB's retention policy does it there)."""


def pair_row(p: Pair) -> tuple[Any, ...]:
    """``p`` as a row of :data:`connectors.accuracy_store.PAIR_COLUMNS`."""
    failure = p.failure_probability if math.isfinite(p.failure_probability) else None
    return (p.time_ms, p.battery_id, p.event_id, p.rul_cycles, p.rul_p10, p.rul_p90, p.true_rul_cycles,
            p.abs_error, p.in_band, p.flagged, p.fault, p.detection_delay_s, failure, p.failure_within_horizon)


def episode_row(battery: str, e: Episode) -> tuple[Any, ...]:
    """``e`` as parameters of :data:`connectors.accuracy_store.UPSERT_EPISODE`."""
    return (battery, e.fault, e.onset_ms, e.detected_ms, e.delay_s, e.last_truth_ms)


class AccuracySink(Sink):
    """Joins predictions with the ground truth and keeps the accuracy (see the module docstring)."""

    name: ClassVar[str] = "accuracy"
    topics: ClassVar[tuple[str, ...]] = (PREDICTIONS, GROUND_TRUTH)
    dead_letter_topics: ClassVar[dict[str, str]] = {GROUND_TRUTH: GROUND_TRUTH_DLQ}

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        from connectors.accuracy_store import AccuracyWriter

        if not endpoints.database_url:
            raise SinkError("no database: set EVTWIN_DATABASE_URL or start the stack with `evtwin services`")
        self.writer = AccuracyWriter(endpoints.database_url, bucket_s=settings.accuracy_bucket_s,
                                     retry_for_s=settings.sink_retry_s)
        self.join = Join(int(settings.accuracy_join_window_s * 1000), settings.accuracy_max_pending,
                         anomaly_flag(settings.alert_anomaly_above))
        self.rolling = Rolling(settings.accuracy_bucket_s * 1000, settings.accuracy_window_s * 1000)
        self.window_s = settings.accuracy_window_s
        self.max_future_ms = int(settings.max_future_skew_s * 1000)
        self.unwritten: dict[str, Pair] = {}
        self.touched: set[str] = set()
        self.unusable = 0
        self.lock = threading.Lock()
        self.counters = CounterDeltas()
        self._next_sweep = 0.0

    def setup(self) -> None:
        """Migrate, then restore the fault episodes and the window's buckets from the tables."""
        self.writer.connect()
        for battery, fault, onset, detected, last in self.writer.episodes():
            episode = self.join.episodes[battery] = Episode(fault, onset, detected, last)
            if episode.delay_s is not None:
                BATTERY_DELAY.labels(battery).set(episode.delay_s)
        for bucket, key, *sums in self.writer.recent(self.window_s):
            self.rolling.load(key, bucket, Sums(*sums))
        self.report()

    def reject(self, topic: str, record: dict[str, Any]) -> str | None:
        return truth_problem(record, int(time.time() * 1000), self.max_future_ms)

    def write(self, batch: SinkBatch) -> None:
        with self.lock:
            truths = batch.topic == GROUND_TRUTH
            for record in batch.records:
                if record["event_id"] in self.unwritten:  # offered again after a failed flush
                    continue
                if truths:
                    pair = self.join.add_truth(record)
                elif all(math.isfinite(record[f]) for f in _PREDICTION_NUMBERS):
                    pair = self.join.add_prediction(record)
                else:
                    self.unusable += 1
                    continue
                if pair is not None:
                    self.unwritten[pair.event_id] = pair

    def flush(self) -> None:
        """Store the pairs formed since the last flush and the changed episodes; only then count
        the pairs that were new in the window and the metrics (a failed flush keeps them)."""
        with self.lock:
            if not self.unwritten and not self.join.changed:
                return
            pairs = list(self.unwritten.values())
            episodes = [episode_row(b, self.join.episodes[b]) for b in sorted(self.join.changed)]
            new = self.writer.write([pair_row(p) for p in pairs], episodes)
            self.unwritten.clear()
            self.join.changed.clear()
            for p in pairs:
                if p.event_id not in new:
                    continue  # stored before this run (a replay): counted then
                self.rolling.add(p)
                self.touched.add(p.battery_id)
                PAIRS.inc()
                if p.detection_delay_s is not None:
                    DELAY.observe(p.detection_delay_s)
                    BATTERY_DELAY.labels(p.battery_id).set(p.detection_delay_s)

    def timers(self) -> list[tuple[float, Callable[[], object]]]:
        migration = self.writer.migration
        if migration is not None and migration.flavour == "postgresql":
            return [(3600.0, self.prune_pairs)]
        return []

    def prune_pairs(self) -> int:
        """Delete pairs older than :data:`PAIRS_KEPT_S` (plain PostgreSQL)."""
        return self.writer.prune_pairs(PAIRS_KEPT_S)

    def report(self) -> None:
        """Set the gauges of the batteries with new pairs (all of them every :data:`SWEEP_S`) and
        the fleet's. Skipped while a flush holds the state (it is called on the event loop)."""
        if not self.lock.acquire(blocking=False):
            return
        try:
            if time.monotonic() >= self._next_sweep:
                self.join.sweep()
                for key in self.rolling.expire():
                    _forget(key)
                self.touched = set(self.rolling.buckets)
                self._next_sweep = time.monotonic() + SWEEP_S
            fleet = self.rolling.window(FLEET)
            MAE.set(_or_nan(fleet.mae))
            COVERAGE.set(_or_nan(fleet.coverage))
            WINDOW_PAIRS.set(fleet.pairs)
            FAILURE_BRIER.set(_or_nan(fleet.failure_brier))
            FAILURE_BASELINE_BRIER.set(_or_nan(fleet.failure_baseline_brier))
            FAILURE_MEAN.set(_or_nan(fleet.failure_mean_probability))
            FAILURE_RATE.set(_or_nan(fleet.failure_observed_rate))
            for key in self.touched - {FLEET}:
                figures = self.rolling.window(key)
                if figures.pairs:
                    BATTERY_MAE.labels(key).set(_or_nan(figures.mae))
                    BATTERY_COVERAGE.labels(key).set(_or_nan(figures.coverage))
                    BATTERY_PAIRS.labels(key).set(figures.pairs)
                else:
                    _forget(key)
            self.touched = set()
            PENDING.set(self.join.pending())
            UNMATCHED.labels(PREDICTIONS).inc(self.counters.delta(PREDICTION, self.join.expired[PREDICTION]))
            UNMATCHED.labels(GROUND_TRUTH).inc(self.counters.delta(TRUTH, self.join.expired[TRUTH]))
            UNUSABLE.inc(self.counters.delta("unusable", self.unusable))
            ONSETS.inc(self.counters.delta("onsets", self.join.onsets))
        finally:
            self.lock.release()
        for table, count in self.writer.rows_written.items():
            SINK_ROWS.labels(table).inc(self.counters.delta(table, count))
        SINK_DB_ERRORS.inc(self.counters.delta("db_errors", self.writer.db_errors))

    def close(self) -> None:
        self.writer.close()


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _forget(battery: str) -> None:
    """Remove a battery's window gauges (its window holds no pair any more)."""
    for gauge in (BATTERY_MAE, BATTERY_COVERAGE, BATTERY_PAIRS):
        with contextlib.suppress(KeyError):
            gauge.remove(battery)


__all__ = ["AccuracySink", "episode_row", "pair_row"]
