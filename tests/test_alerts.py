"""Alert rules: one episode per crossing, no flapping while hovering, resolution once."""

from __future__ import annotations

import numpy as np

from streams.alerts import AlertEngine, default_rules
from streams.settings import Settings


def _batch(values: list[float], battery: str = "BAT_A", start: int = 0) -> tuple[list[dict], dict]:
    records = [{"battery_id": battery, "event_id": f"e{start + i}", "timestamp": 1_000 * (start + i)}
               for i in range(len(values))]
    n = len(values)
    columns = {"soc": np.asarray(values, float), "temperature": np.full(n, 25.0),
               "failure_probability": np.zeros(n), "rul_p50": np.full(n, 800.0),
               "anomaly_score": np.zeros(n)}
    return records, columns


def _engine() -> AlertEngine:
    return AlertEngine(default_rules(Settings()), debounce=3)


def test_crossing_and_hovering_opens_once_and_resolves_once() -> None:
    engine = _engine()
    # falls below 15 %, hovers around it (14.9 / 15.1 …) for a long time, then recovers past 17 %
    soc = [30, 20, 16, 14.5, 14.2, 14.0] + [14.9, 15.1] * 20 + [16.0, 18.0, 19.0, 20.0, 25.0]
    alerts = []
    for i in range(0, len(soc), 7):  # in several batches, as a stream would deliver them
        records, columns = _batch(soc[i:i + 7], start=i)
        alerts += engine.evaluate(records, columns)
    assert [(a["rule"], a["status"]) for a in alerts] == [("low_soc", "OPENED"), ("low_soc", "RESOLVED")]
    opened, resolved = alerts
    assert opened["alert_id"] == resolved["alert_id"]
    assert opened["opened_at"] == 5_000  # third consecutive reading below 15 %
    assert resolved["resolved_at"] == 1_000 * (len(soc) - 2)  # third reading above 17 %
    assert resolved["threshold"] == 17.0 and opened["severity"] == "WARNING"


def test_brief_dips_do_not_open_an_episode() -> None:
    engine = _engine()
    records, columns = _batch([20, 14, 20, 14, 14, 20, 14, 20])
    assert engine.evaluate(records, columns) == []
    assert engine.open_count() == 0


def test_restore_continues_an_episode_opened_elsewhere() -> None:
    engine = _engine()
    engine.restore([{"battery_id": "BAT_A", "rule": "low_soc", "status": "OPENED",
                     "alert_id": "a-1", "opened_at": 7}])
    records, columns = _batch([10, 12, 14, 18, 19, 20])
    alerts = engine.evaluate(records, columns)
    assert [(a["alert_id"], a["status"]) for a in alerts] == [("a-1", "RESOLVED")]


def test_each_rule_fires_on_its_signal() -> None:
    engine = _engine()
    records, columns = _batch([50.0] * 3)
    columns["temperature"][:] = 65.0
    columns["failure_probability"][:] = 0.9
    columns["rul_p50"][:] = 50.0
    columns["anomaly_score"][:] = 0.95
    rules = {a["rule"] for a in engine.evaluate(records, columns)}
    assert rules == {"over_temperature", "failure_risk", "low_rul", "anomaly"}
