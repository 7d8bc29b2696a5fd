"""Online accuracy: the twin's predictions joined with the simulator's ground truth, in event time.

A prediction (``ev.predictions.v1``) and a truth (``ev.groundtruth.v1``) belong together when they
carry the same ``event_id`` (the telemetry reading both are about); both topics are keyed by battery
id with the same partition count, so one consumer of both sees a battery's halves. :class:`Join`
keeps the unmatched halves per battery and forms a :class:`Pair` when the other half arrives. A half
waits until the *other* stream of its battery is ``join_window_ms`` past it (so a lagging score
worker delays pairs instead of losing them); at most ``max_pending`` halves wait in all (beyond, the
battery that adds one drops its oldest of that side), and a battery silent on both streams for
twice the window is forgotten (:meth:`Join.sweep`). What is dropped unmatched is counted
(:attr:`Join.expired`).

What a pair measures (units):

* RUL error ``|rul_cycles - true_rul_cycles|``, equivalent full cycles (EFC); its mean is the MAE;
* band coverage: whether ``rul_p10 <= true_rul_cycles <= rul_p90`` (the P10-P90 band should hold
  80 % of the truths);
* failure calibration: the predicted ``failure_probability`` (0-1) beside the truth's
  ``failure_within_horizon`` — over many pairs, their means should agree and the mean squared
  difference (the Brier score) should stay below the label rate's ``rate * (1 - rate)``;
* fault-detection delay: a battery's fault episode starts at its first truth with an active fault
  (its *onset*); the first pair of that episode whose prediction is *flagged* detects it, and the
  delay is the pair's event time minus the onset, seconds. A prediction is flagged by the twin's
  battery-level fault flag when the record carries one (``fault_flag``), else when its
  ``anomaly_score`` reaches the threshold the ``anomaly`` alert opens at. Faults that leave no trace
  in a reading (:data:`UNFLAGGABLE`) are not expected to be flagged: ``telemetry_gap`` reveals them.

:class:`streams.state.rolling.Rolling` keeps the figures of the pairs over time. Everything here is
pure: no clock, no I/O (the sink in :mod:`streams.sinks.accuracy` does those).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

UNFLAGGABLE = frozenset({"sensor_dropout"})
"""Faults a reading cannot show (the dropout removes readings): never expected to be flagged."""
PREDICTION, TRUTH = "prediction", "truth"
MATCHED_KEPT = 16
"""Event ids of recent pairs kept per battery, so a duplicate half neither pairs again nor waits."""


@dataclass(frozen=True, slots=True)
class Pair:
    """A prediction and the truth of the same reading.

    Attributes:
        battery_id: Pack identifier.
        event_id: Id of the reading.
        time_ms: Event time of the reading, epoch milliseconds.
        rul_cycles: Predicted RUL (P50), EFC.
        rul_p10: Lower edge of the predicted band, EFC.
        rul_p90: Upper edge of the predicted band, EFC.
        true_rul_cycles: True RUL, EFC.
        flagged: The prediction flags a fault.
        fault: The fault active per the truth (``none`` if none).
        detection_delay_s: Set on the pair that detected its battery's fault episode: event time
            from the onset to this reading, s.
        failure_probability: Predicted probability (0-1) of failure within the horizon; NaN when
            the prediction carried none.
        failure_within_horizon: The truth's failure label (end of life or a fault within the
            horizon); ``None`` when the truth carried none.
    """

    battery_id: str
    event_id: str
    time_ms: int
    rul_cycles: float
    rul_p10: float
    rul_p90: float
    true_rul_cycles: float
    flagged: bool
    fault: str
    detection_delay_s: float | None = None
    failure_probability: float = float("nan")
    failure_within_horizon: bool | None = None

    @property
    def failure_known(self) -> bool:
        """Both halves of the failure calibration are present."""
        return self.failure_within_horizon is not None and math.isfinite(self.failure_probability)

    @property
    def abs_error(self) -> float:
        """``|predicted - true|`` RUL, EFC."""
        return abs(self.rul_cycles - self.true_rul_cycles)

    @property
    def in_band(self) -> bool:
        """The true RUL lies inside the predicted P10-P90 band (edges included)."""
        return self.rul_p10 <= self.true_rul_cycles <= self.rul_p90


@dataclass(slots=True)
class Episode:
    """A battery's fault as its truths tell it, and when the twin flagged it.

    Attributes:
        fault: The fault of the newest truth (``none`` if none).
        onset_ms: Event time of the first truth of the current (or last) episode, ms.
        detected_ms: Event time of the pair that detected it, ms; ``None`` while undetected.
        last_truth_ms: Event time of the newest truth seen, ms (older ones change nothing).
    """

    fault: str = "none"
    onset_ms: int | None = None
    detected_ms: int | None = None
    last_truth_ms: int = -1

    @property
    def delay_s(self) -> float | None:
        """Onset to detection, s; ``None`` while undetected."""
        if self.onset_ms is None or self.detected_ms is None:
            return None
        return (self.detected_ms - self.onset_ms) / 1000.0


@dataclass(slots=True)
class _Halves:
    """One battery's unmatched halves (insertion order ~ event time), recent matches, stream times."""

    predictions: dict[str, tuple[int, float, float, float, bool, float]] = field(default_factory=dict)
    truths: dict[str, tuple[int, float, str, bool | None]] = field(default_factory=dict)
    matched: dict[str, int] = field(default_factory=dict)
    prediction_ms: int = -1
    truth_ms: int = -1


def anomaly_flag(threshold: float) -> Callable[[dict[str, Any]], bool]:
    """The flag of a prediction record: its ``fault_flag`` if it carries one, else
    ``anomaly_score >= threshold``."""

    def flagged(record: dict[str, Any]) -> bool:
        flag = record.get("fault_flag")
        return bool(flag) if flag is not None else float(record["anomaly_score"]) >= threshold

    return flagged


class Join:
    """Pairs predictions with truths by event id, per battery (see the module docstring).

    Args:
        join_window_ms: How far the other stream of a battery may pass an unmatched half, ms.
        max_pending: Unmatched halves kept in all (all batteries, both sides).
        flagged: Whether a prediction record flags a fault (:func:`anomaly_flag`).
    """

    def __init__(self, join_window_ms: int, max_pending: int,
                 flagged: Callable[[dict[str, Any]], bool]) -> None:
        self.window_ms = join_window_ms
        self.max_pending = max_pending
        self.flagged = flagged
        self.batteries: dict[str, _Halves] = {}
        self.episodes: dict[str, Episode] = {}
        self.changed: set[str] = set()
        """Batteries whose :class:`Episode` started, ended or was detected since the caller last
        cleared this set (the sink stores those)."""
        self.expired = {PREDICTION: 0, TRUTH: 0}
        """Halves dropped without a partner, per side (cumulative)."""
        self.onsets = 0
        """Fault episodes that started (cumulative)."""
        self.newest_ms = -1
        """The newest event time seen on either stream, ms."""
        self._pending = 0

    def add_prediction(self, record: dict[str, Any]) -> Pair | None:
        """Take a decoded ``prediction`` record (``timestamp`` in ms); return its pair, if complete."""
        battery, event = record["battery_id"], record["event_id"]
        t, h = int(record["timestamp"]), self._halves(battery)
        h.prediction_ms = max(h.prediction_ms, t)
        self.newest_ms = max(self.newest_ms, t)
        failure = record.get("failure_probability")
        half = (t, float(record["rul_cycles"]), float(record["rul_p10"]), float(record["rul_p90"]),
                self.flagged(record), float("nan") if failure is None else float(failure))
        truth = h.truths.pop(event, None)
        if truth is not None:
            self._pending -= 1
            pair: Pair | None = self._pair(battery, event, half, truth)
        else:
            pair = None
            self._wait(h.predictions, event, half, h.matched)
        self._expire(h, h.predictions, PREDICTION)
        return pair

    def add_truth(self, record: dict[str, Any]) -> Pair | None:
        """Take a decoded ``ground_truth`` record (``timestamp`` in ms); return its pair, if complete."""
        battery, event = record["battery_id"], record["event_id"]
        t, h = int(record["timestamp"]), self._halves(battery)
        h.truth_ms = max(h.truth_ms, t)
        self.newest_ms = max(self.newest_ms, t)
        fault = str(record.get("fault") or "none")
        self._observe_fault(battery, t, fault)
        label = record.get("failure_within_horizon")
        half = (t, float(record["true_rul_cycles"]), fault, None if label is None else bool(label))
        prediction = h.predictions.pop(event, None)
        if prediction is not None:
            self._pending -= 1
            pair: Pair | None = self._pair(battery, event, prediction, half)
        else:
            pair = None
            self._wait(h.truths, event, half, h.matched)
        self._expire(h, h.truths, TRUTH)
        return pair

    def _wait(self, pending: dict[str, Any], event: str, half: Any, matched: dict[str, int]) -> None:
        """Keep ``half`` until its partner comes (unless it is a duplicate of a recent pair's)."""
        if event in matched:
            return
        if event not in pending:
            self._pending += 1
        pending[event] = half

    def _halves(self, battery: str) -> _Halves:
        h = self.batteries.get(battery)
        if h is None:
            h = self.batteries[battery] = _Halves()
        return h

    def _pair(self, battery: str, event: str, p: tuple[int, float, float, float, bool, float],
              truth: tuple[int, float, str, bool | None]) -> Pair:
        t, rul, p10, p90, flagged, failure = p
        fault = truth[2]
        self.batteries[battery].matched[event] = t
        delay = None
        episode = self.episodes.get(battery)
        if (flagged and fault != "none" and fault not in UNFLAGGABLE and episode is not None
                and episode.fault == fault and episode.onset_ms is not None
                and episode.detected_ms is None and t >= episode.onset_ms):
            episode.detected_ms = t
            delay = episode.delay_s
            self.changed.add(battery)
        return Pair(battery, event, t, rul, p10, p90, truth[1], flagged, fault, delay, failure, truth[3])

    def _observe_fault(self, battery: str, t: int, fault: str) -> None:
        """A new episode starts with the first truth of a fault other than the last one's."""
        episode = self.episodes.get(battery)
        if episode is None:
            episode = self.episodes[battery] = Episode()
        if t <= episode.last_truth_ms:  # a replayed or late truth: no transition
            return
        episode.last_truth_ms = t
        if fault != episode.fault:
            if fault != "none":
                episode.onset_ms, episode.detected_ms = t, None
                self.onsets += 1
            episode.fault = fault
            self.changed.add(battery)

    def _expire(self, h: _Halves, grown: dict[str, Any], grown_side: str) -> None:
        """Drop, oldest first, the battery's halves its other stream passed by the window; then,
        while more than ``max_pending`` wait in all, the oldest of the side that just grew."""
        for side, pending, other_ms in ((PREDICTION, h.predictions, h.truth_ms),
                                        (TRUTH, h.truths, h.prediction_ms)):
            while pending and pending[next(iter(pending))][0] < other_ms - self.window_ms:
                del pending[next(iter(pending))]
                self.expired[side] += 1
                self._pending -= 1
        while self._pending > self.max_pending and grown:
            del grown[next(iter(grown))]
            self.expired[grown_side] += 1
            self._pending -= 1
        newest = max(h.prediction_ms, h.truth_ms)
        while h.matched and (len(h.matched) > MATCHED_KEPT
                             or h.matched[next(iter(h.matched))] < newest - self.window_ms):
            del h.matched[next(iter(h.matched))]

    def sweep(self) -> int:
        """Forget the batteries silent on both streams for twice the join window before the newest
        event seen (a pack taken out of service): their waiting halves count as expired. Returns
        how many batteries went."""
        cutoff = self.newest_ms - 2 * self.window_ms
        gone = [b for b, h in self.batteries.items() if max(h.prediction_ms, h.truth_ms) < cutoff]
        for battery in gone:
            h = self.batteries.pop(battery)
            self.expired[PREDICTION] += len(h.predictions)
            self.expired[TRUTH] += len(h.truths)
            self._pending -= len(h.predictions) + len(h.truths)
        return len(gone)

    def pending(self) -> int:
        """Unmatched halves held now, all batteries and both sides."""
        return self._pending


__all__ = ["PREDICTION", "TRUTH", "UNFLAGGABLE", "Episode", "Join", "Pair", "anomaly_flag"]
