"""Alert rules with hysteresis and debounce: one alert per episode, OPENED then RESOLVED.

A rule opens after ``debounce`` consecutive readings beyond its *open* threshold and resolves after
``debounce`` consecutive readings beyond its *clear* threshold, which lies on the safe side of the
open one (hysteresis). A battery hovering at the open threshold therefore opens one episode and does
not flap. Thresholds come from the settings (the seed's rules: SoC < 15 %, temperature > 60 °C,
failure probability > 0.7, RUL < 100 cycles; plus anomalies, and ``battery_fault`` on the twin's
battery-level fault score, whose thresholds the worker takes from the model card).

One more rule watches for silence: ``telemetry_gap`` opens when a battery has sent nothing while
its partition's event time moved on by ``silence_s`` (a lost telemetry link, a dead modem, the
``sensor_dropout`` fault), and resolves with its next reading. Silence is measured in the partition's
event time (the newest reading on it, never ahead of the wall clock), from the partition time at
which the battery's last reading *arrived*: a replay far behind real time raises the same episodes,
and a battery whose own clock runs late is not mistaken for a silent one.

Episodes (open ones and runs of readings toward a change) are partition state: written to a
changelog topic with each batch and restored when a worker takes over a partition
(:meth:`AlertEngine.assign`), so a rebalance or a crash neither loses nor duplicates an episode.
A battery that is already silent when its partition moves is noticed by its new owner only once it
has reported there.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streams.runtime.partition_state import PartitionState
from streams.runtime.records import Column, ScoredBatch

GAP_RULE = "telemetry_gap"
"""Name of the silence rule (see the module docstring)."""
FAULT_RULE = "battery_fault"
"""Name of the rule on the twin's battery-level fault score (thresholds from the model card)."""

_EPISODE_IDS = uuid.UUID("5d1f6a52-0c4e-4b43-9a57-6f1b2e0d7c11")


def episode_id(battery_id: str, rule: str, opened_at: int, event_id: str) -> str:
    """The alert id of the episode that ``event_id`` opens: a UUID derived from what opened it, so
    a worker that scores the same readings again (after a rebalance, before the last commit) opens
    the same episode under the same id, and the sinks' upserts keep one row per episode."""
    return str(uuid.uuid5(_EPISODE_IDS, f"{battery_id}/{rule}/{opened_at}/{event_id}"))


@dataclass(frozen=True)
class Rule:
    """One alert rule.

    Attributes:
        name: Rule name, e.g. ``low_soc``.
        column: The column of a :class:`streams.runtime.records.ScoredBatch` it watches.
        above: True when values above ``open_at`` are bad; False when values below are.
        open_at: Threshold that opens an episode (unit of the column).
        clear_at: Threshold that resolves it, on the safe side of ``open_at``.
        severity: ``INFO``, ``WARNING`` or ``CRITICAL``.
        what: Text for the message, e.g. ``state of charge``.
        unit: Unit for the message.
    """

    name: str
    column: Column
    above: bool
    open_at: float
    clear_at: float
    severity: str
    what: str
    unit: str


def default_rules(settings: Any) -> list[Rule]:
    """The rules, with thresholds from ``settings`` (``alert_*`` fields)."""
    s = settings
    return [
        Rule("low_soc", "soc", False, s.alert_soc_below, s.alert_soc_below + s.alert_soc_hysteresis,
             "WARNING", "state of charge", "%"),
        Rule("over_temperature", "temperature", True, s.alert_temperature_above,
             s.alert_temperature_above - s.alert_temperature_hysteresis, "CRITICAL",
             "pack temperature", " °C"),
        Rule("failure_risk", "failure_probability", True, s.alert_failure_probability_above,
             s.alert_failure_probability_above - 0.1, "CRITICAL", "failure probability", ""),
        Rule("low_rul", "rul_p50", False, s.alert_rul_below, s.alert_rul_below * 1.1, "WARNING",
             "remaining useful life", "cycles"),
        Rule("anomaly", "anomaly_score", True, s.alert_anomaly_above, s.alert_anomaly_above - 0.2,
             "WARNING", "anomaly score", ""),
        # The twin's battery-level fault flag as an alert: thresholds from the model card
        # (AlertEngine.retune, when a model is loaded); these are TwinEstimator's defaults.
        Rule(FAULT_RULE, "fault_score", True, 0.5, 0.3, "CRITICAL", "battery fault score", ""),
    ]


@dataclass
class Episode:
    """State of one (battery, rule): an open episode and/or a run of readings toward a change."""

    alert_id: str | None = None
    opened_at: int = 0
    pending: int = 0

    def to_json(self) -> list[Any]:
        return [self.alert_id, self.opened_at, self.pending]

    @classmethod
    def from_json(cls, data: list[Any]) -> Episode:
        return cls(data[0], int(data[1]), int(data[2]))


def _key(battery: str, rule: str) -> str:
    """State key of (battery, rule); battery ids never contain ``/`` (see validation)."""
    return f"{battery}/{rule}"


class AlertEngine:
    """Evaluates the rules on scored batches and returns alert records to emit.

    The episodes live in a :class:`streams.runtime.partition_state.PartitionState` per partition
    of the telemetry topic: restored from its changelog when the worker is assigned a partition
    (:meth:`assign`), dropped when it loses one (:meth:`revoke`).

    Args:
        rules: The rules.
        debounce: Consecutive readings needed to open or resolve an episode (>= 1).
        silence_s: Silence that opens ``telemetry_gap``, s (0 = off).
        changelog: Changelog topic of the episodes (see :func:`streams.topics.state_topic_specs`).
    """

    def __init__(self, rules: Sequence[Rule], debounce: int = 3, silence_s: float = 0.0,
                 changelog: str = "evtwin-score-alerts-changelog") -> None:
        self.rules = list(rules)
        self.debounce = max(1, debounce)
        self.episodes: PartitionState[Episode] = PartitionState(changelog, Episode.to_json,
                                                                Episode.from_json)
        self.silence_ms = int(silence_s * 1000)
        self.gap_rule = Rule(GAP_RULE, "timestamp", True, silence_s, silence_s, "WARNING",
                             "no telemetry for", " s")
        # partition -> battery -> (partition time at its last arrival, its last event id), ms
        self._arrivals: dict[int, dict[str, tuple[int, str]]] = {}
        self._partition_time: dict[int, int] = {}
        self._checked_at: dict[int, int] = {}

    def retune(self, name: str, open_at: float, clear_at: float) -> None:
        """Move rule ``name``'s thresholds (open episodes stay open until the new clear level)."""
        self.rules = [dataclasses.replace(r, open_at=open_at, clear_at=clear_at) if r.name == name else r
                      for r in self.rules]

    def open_count(self) -> int:
        """Open episodes known to this engine."""
        return sum(1 for _, _, e in self.episodes.items() if e.alert_id is not None)

    def assign(self, partitions: Iterable[int], producer: Any,
               consumer_factory: Callable[[], Any]) -> int:
        """Restore the episodes of ``partitions`` from the changelog; return how many."""
        return self.episodes.assign(partitions, producer, consumer_factory)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Drop the state of partitions this worker no longer owns."""
        partitions = list(partitions)
        self.episodes.revoke(partitions)
        for p in partitions:
            self._arrivals.pop(p, None)
            self._partition_time.pop(p, None)
            self._checked_at.pop(p, None)

    def flush_changes(self, produce: Callable[..., None]) -> int:
        """Write the episodes changed since the last call to the changelog (see
        :meth:`PartitionState.flush_changes`)."""
        return self.episodes.flush_changes(produce)

    def watch_silence(self, batch: ScoredBatch, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Note the arrival of the batch's records; return ``telemetry_gap`` alerts: RESOLVED for
        silent batteries that reported again, OPENED for batteries silent for ``silence_s`` of
        their partition's event time (checked at most once per second of it)."""
        if self.silence_ms <= 0:
            return []
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out: list[dict[str, Any]] = []
        touched: set[int] = set()
        for rec, p in zip(batch.records, batch.partitions, strict=True):
            battery = rec["battery_id"]
            clock = min(max(self._partition_time.get(p, 0), rec["timestamp"]), now_ms)
            self._partition_time[p] = clock
            arrivals = self._arrivals.setdefault(p, {})
            key = _key(battery, GAP_RULE)
            ep = self.episodes.get(p, key)
            if ep is not None and ep.alert_id is not None:
                self.episodes.delete(p, key)
                since = arrivals.get(battery, (ep.opened_at - self.silence_ms, ""))[0]
                out.append(self._record(self.gap_rule, rec, ep, (clock - since) / 1000.0, "RESOLVED",
                                        self.silence_ms / 1000.0))
            arrivals[battery] = (clock, rec["event_id"])
            touched.add(p)
        for p in touched:
            clock = self._partition_time[p]
            if clock - self._checked_at.get(p, 0) < 1000:
                continue
            self._checked_at[p] = clock
            for battery, (arrived, event_id) in self._arrivals[p].items():
                key = _key(battery, GAP_RULE)
                if clock - arrived < self.silence_ms or self.episodes.get(p, key) is not None:
                    continue
                ep = Episode(episode_id(battery, GAP_RULE, arrived + self.silence_ms, event_id),
                             arrived + self.silence_ms)
                self.episodes.put(p, key, ep)
                last = {"battery_id": battery, "event_id": event_id, "timestamp": arrived}
                out.append(self._record(self.gap_rule, last, ep, (clock - arrived) / 1000.0, "OPENED",
                                        self.silence_ms / 1000.0))
        return out

    def evaluate(self, batch: ScoredBatch) -> list[dict[str, Any]]:
        """Return the alert records (OPENED / RESOLVED) that ``batch`` causes, in order.

        Readings the battery's state did not take (``batch.taken``: redelivered after a handover
        or a crash, duplicated, late) are skipped: the episodes restored with the partition
        already counted them, and counting them again would move a debounce — after a
        redelivery that starts between an episode's first bad readings, it would open a second
        episode for the same crossing."""
        out: list[dict[str, Any]] = []
        records, partitions = batch.records, batch.partitions
        battery_ids: Sequence[str | None] = batch.battery_ids
        taken = batch.taken if len(batch.taken) and not batch.taken.all() else None
        if taken is not None:  # a battery id no rule watches
            battery_ids = [b if t else None for b, t in zip(battery_ids, taken.tolist(), strict=True)]
        with_state: dict[str, set[str]] = {}
        for _, key, _ in self.episodes.items():
            battery, rule_name = key.rsplit("/", 1)
            with_state.setdefault(rule_name, set()).add(battery)
        for rule in self.rules:
            values = batch.column(rule.column)
            bad = values > rule.open_at if rule.above else values < rule.open_at
            # Every reading of a battery that is bad in this batch or already has state: a good
            # reading between bad ones must reset the debounce count.
            watch: set[str | None] = set(with_state.get(rule.name, ()))
            watch.update(battery_ids[i] for i in np.flatnonzero(bad if taken is None else bad & taken).tolist())
            if not watch:
                continue
            for i in (i for i, b in enumerate(battery_ids) if b in watch):
                alert = self._step(rule, records[i], partitions[i], float(values[i]), bool(bad[i]))
                if alert is not None:
                    out.append(alert)
        return out

    def _step(self, rule: Rule, rec: dict[str, Any], p: int, value: float,
              bad: bool) -> dict[str, Any] | None:
        key = _key(rec["battery_id"], rule.name)
        ep = self.episodes.get(p, key)
        if ep is None or ep.alert_id is None:
            if not bad:
                self.episodes.delete(p, key)
                return None
            if ep is None:
                ep = Episode()
                self.episodes.put(p, key, ep)
            self.episodes.touch(p, key)
            ep.pending += 1
            if ep.pending < self.debounce:
                return None
            ep.alert_id = episode_id(rec["battery_id"], rule.name, rec["timestamp"], rec["event_id"])
            ep.opened_at, ep.pending = rec["timestamp"], 0
            return self._record(rule, rec, ep, value, "OPENED", rule.open_at)
        clear = value < rule.clear_at if rule.above else value > rule.clear_at
        if not clear:
            if ep.pending:
                ep.pending = 0
                self.episodes.touch(p, key)
            return None
        ep.pending += 1
        self.episodes.touch(p, key)
        if ep.pending < self.debounce:
            return None
        self.episodes.delete(p, key)
        return self._record(rule, rec, ep, value, "RESOLVED", rule.clear_at)

    @staticmethod
    def _record(rule: Rule, rec: dict[str, Any], ep: Episode, value: float, status: str,
                threshold: float) -> dict[str, Any]:
        side = ("above" if rule.above else "below") if status == "OPENED" else "back past"
        message = f"{rec['battery_id']}: {rule.what} {value:.3g}{rule.unit} {side} {threshold:g}{rule.unit}"
        if rule.name == GAP_RULE:
            message = (f"{rec['battery_id']}: no telemetry for {value:.0f} s (threshold {threshold:g} s)"
                       if status == "OPENED" else
                       f"{rec['battery_id']}: telemetry back after a {value:.0f} s gap")
        return {
            "alert_id": ep.alert_id, "battery_id": rec["battery_id"], "rule": rule.name,
            "severity": rule.severity, "status": status, "value": value, "threshold": threshold,
            "message": message,
            "event_id": rec["event_id"], "opened_at": ep.opened_at,
            "resolved_at": rec["timestamp"] if status == "RESOLVED" else None,
        }


__all__ = ["FAULT_RULE", "GAP_RULE", "AlertEngine", "Episode", "Rule", "default_rules", "episode_id"]
