"""Alert rules with hysteresis and debounce: one alert per episode, OPENED then RESOLVED.

A rule opens after ``debounce`` consecutive readings beyond its *open* threshold and resolves after
``debounce`` consecutive readings beyond its *clear* threshold, which lies on the safe side of the
open one (hysteresis). A battery hovering at the open threshold therefore opens one episode and does
not flap. Thresholds come from the settings (the seed's rules: SoC < 15 %, temperature > 60 °C,
failure probability > 0.7, RUL < 100 cycles; plus anomalies).

The state of open episodes is rebuilt from the alerts topic itself when a worker takes over a
partition (:meth:`AlertEngine.restore`), so a rebalance neither loses nor duplicates an episode.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Rule:
    """One alert rule.

    Attributes:
        name: Rule name, e.g. ``low_soc``.
        column: The score or telemetry column it watches (``soc``, ``temperature``,
            ``failure_probability``, ``rul_p50``, ``anomaly_score``).
        above: True when values above ``open_at`` are bad; False when values below are.
        open_at: Threshold that opens an episode (unit of the column).
        clear_at: Threshold that resolves it, on the safe side of ``open_at``.
        severity: ``INFO``, ``WARNING`` or ``CRITICAL``.
        what: Text for the message, e.g. ``state of charge``.
        unit: Unit for the message.
    """

    name: str
    column: str
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
    ]


@dataclass
class Episode:
    """State of one (battery, rule): an open episode and/or a run of readings toward a change."""

    alert_id: str | None = None
    opened_at: int = 0
    pending: int = 0


class AlertEngine:
    """Evaluates the rules on scored batches and returns alert records to emit.

    Args:
        rules: The rules.
        debounce: Consecutive readings needed to open or resolve an episode (>= 1).
    """

    def __init__(self, rules: Sequence[Rule], debounce: int = 3) -> None:
        self.rules = list(rules)
        self.debounce = max(1, debounce)
        self.state: dict[tuple[str, str], Episode] = {}

    def open_count(self) -> int:
        """Open episodes known to this engine."""
        return sum(1 for e in self.state.values() if e.alert_id is not None)

    def restore(self, alerts: Iterable[dict[str, Any]]) -> None:
        """Replay alert records (oldest first) of a partition taken over: OPENED opens,
        RESOLVED closes."""
        for a in alerts:
            key = (a["battery_id"], a["rule"])
            if a["status"] == "OPENED":
                self.state[key] = Episode(a["alert_id"], a["opened_at"], 0)
            else:
                self.state.pop(key, None)

    def forget(self, battery_ids: Iterable[str]) -> None:
        """Drop the state of batteries whose partition this worker no longer owns."""
        gone = set(battery_ids)
        for key in [k for k in self.state if k[0] in gone]:
            del self.state[key]

    def evaluate(self, records: Sequence[dict[str, Any]],
                 columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Return the alert records (OPENED / RESOLVED) that ``records`` cause, in order."""
        out: list[dict[str, Any]] = []
        battery_ids = [r["battery_id"] for r in records]
        for rule in self.rules:
            values = columns[rule.column]
            bad = values > rule.open_at if rule.above else values < rule.open_at
            # Every reading of a battery that is bad in this batch or already has state: a good
            # reading between bad ones must reset the debounce count.
            watch = {b for (b, name) in self.state if name == rule.name}
            watch.update(battery_ids[i] for i in np.flatnonzero(bad).tolist())
            if not watch:
                continue
            for i in (i for i, b in enumerate(battery_ids) if b in watch):
                alert = self._step(rule, records[i], float(values[i]), bool(bad[i]))
                if alert is not None:
                    out.append(alert)
        return out

    def _step(self, rule: Rule, rec: dict[str, Any], value: float, bad: bool) -> dict[str, Any] | None:
        key = (rec["battery_id"], rule.name)
        ep = self.state.get(key)
        if ep is None or ep.alert_id is None:
            if not bad:
                self.state.pop(key, None)
                return None
            ep = self.state.setdefault(key, Episode())
            ep.pending += 1
            if ep.pending < self.debounce:
                return None
            ep.alert_id, ep.opened_at, ep.pending = str(uuid.uuid4()), rec["timestamp"], 0
            return self._record(rule, rec, ep, value, "OPENED", rule.open_at)
        clear = value < rule.clear_at if rule.above else value > rule.clear_at
        if not clear:
            ep.pending = 0
            return None
        ep.pending += 1
        if ep.pending < self.debounce:
            return None
        del self.state[key]
        return self._record(rule, rec, ep, value, "RESOLVED", rule.clear_at)

    @staticmethod
    def _record(rule: Rule, rec: dict[str, Any], ep: Episode, value: float, status: str,
                threshold: float) -> dict[str, Any]:
        side = ("above" if rule.above else "below") if status == "OPENED" else "back past"
        return {
            "alert_id": ep.alert_id, "battery_id": rec["battery_id"], "rule": rule.name,
            "severity": rule.severity, "status": status, "value": value, "threshold": threshold,
            "message": f"{rec['battery_id']}: {rule.what} {value:.3g}{rule.unit} {side} "
                       f"{threshold:g}{rule.unit}",
            "event_id": rec["event_id"], "opened_at": ep.opened_at,
            "resolved_at": rec["timestamp"] if status == "RESOLVED" else None,
        }


__all__ = ["AlertEngine", "Episode", "Rule", "default_rules"]
