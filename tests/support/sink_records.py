"""Decoded ``prediction`` and ``alert`` records with plausible values, as the database sink gets
them, and epoch milliseconds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def prediction(battery_id: str, ts_ms: int, **values: Any) -> dict[str, Any]:
    """One decoded ``prediction`` record with plausible values."""
    record: dict[str, Any] = {
        "event_id": str(uuid.uuid4()), "battery_id": battery_id, "timestamp": ts_ms, "seq": 0,
        "soc": 80.0, "soh": 95.0, "voltage": 380.5, "current": 105.3, "temperature": 32.1,
        "charge_cycles": 150, "power_consumption": 40.1, "rul_cycles": 900.0, "rul_p10": 700.0,
        "rul_p90": 1100.0, "failure_probability": 0.05, "anomaly_score": 0.1,
        "model_version": "ev-twin@1", "scored_at": ts_ms + 35, "fault_score": 0.05, "fault_flag": False,
    }
    record.update(values)
    return record


def alert(alert_id: str, battery_id: str, status: str, opened_ms: int,
          resolved_ms: int | None = None, **values: Any) -> dict[str, Any]:
    """One decoded ``alert`` record."""
    record: dict[str, Any] = {
        "alert_id": alert_id, "battery_id": battery_id, "rule": "over_temperature",
        "severity": "WARNING", "status": status, "value": 61.5, "threshold": 60.0,
        "message": f"{battery_id}: temperature 61.5 °C above 60 °C", "event_id": str(uuid.uuid4()),
        "opened_at": opened_ms, "resolved_at": resolved_ms,
    }
    record.update(values)
    return record


def ms(when: datetime) -> int:
    """``when`` in milliseconds since the epoch."""
    return (when - EPOCH) // timedelta(milliseconds=1)
