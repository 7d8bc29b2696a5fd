"""The ground-truth sink: the simulator's true state (``ev.groundtruth.v1``) into ``ev_ground_truth``.

Retraining (``evtwin retrain``) labels what the twin collected by joining ``ev_telemetry`` with this
table on ``(time, battery_id)``. It runs in its own consumer group (``evtwin sink --kind
groundtruth``, and in ``evtwin up`` when retraining is scheduled), so a backlog of truth never
holds the predictions back. One transaction per batch, ``ON CONFLICT DO NOTHING``: a replay
changes no row.

The truth is outside input (a simulator here, a lab or a workshop elsewhere): a record that does not
decode or fails :func:`truth_problem` goes to ``ev.groundtruth.dlq.v1`` with the reason and the sink
goes on (the runner's :class:`streams.sinks.app.DeadLetters`); the online-accuracy sink, which
consumes the same topic, does the same.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

from connectors.endpoints import Endpoints
from streams.errors import SinkError
from streams.scoring.validation import BATTERY_ID, EVENT_ID_MAX
from streams.settings import Settings
from streams.sinks.base import Sink, SinkBatch
from streams.sinks.database import SINK_DB_ERRORS, SINK_ROWS, CounterDeltas
from streams.topics import GROUND_TRUTH, GROUND_TRUTH_DLQ

#: Numeric fields of a truth that must be finite and at least 0 (unit).
_NON_NEGATIVE = {"true_soh": "%", "true_rul_cycles": "cycles", "capacity_ah": "Ah", "r0_ohm": "ohm"}


def truth_problem(record: dict[str, Any], now_ms: int, max_future_ms: int) -> str | None:
    """Why a decoded ``ground_truth`` record cannot be used, or ``None``.

    Args:
        record: The record (``timestamp`` in epoch milliseconds).
        now_ms: The current time, epoch milliseconds.
        max_future_ms: How far ahead of ``now_ms`` its event time may be, ms (old truths are fine:
            the accuracy of a replay is still the accuracy).
    """
    battery_id = record.get("battery_id")
    if not isinstance(battery_id, str) or not BATTERY_ID.fullmatch(battery_id):
        return (f"battery_id {battery_id!r} is not 1-50 characters of [A-Za-z0-9_.-] "
                "starting with a letter or digit")
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= EVENT_ID_MAX:
        return f"event_id must be 1-{EVENT_ID_MAX} characters"
    for name, unit in _NON_NEGATIVE.items():
        value = record.get(name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"{name} is {value!r} {unit} (not a finite number >= 0)"
    if record["true_soh"] > 200:
        return f"true_soh {record['true_soh']:g} % above 200 %"
    if int(record["timestamp"]) > now_ms + max_future_ms:
        return f"timestamp {record['timestamp']} ms is more than {max_future_ms / 1000:g} s ahead of now"
    return None


class GroundTruthSink(Sink):
    """Writes ground-truth records to ``ev_ground_truth``, one transaction per batch."""

    name: ClassVar[str] = "groundtruth"
    topics: ClassVar[tuple[str, ...]] = (GROUND_TRUTH,)
    dead_letter_topics: ClassVar[dict[str, str]] = {GROUND_TRUTH: GROUND_TRUTH_DLQ}

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        from connectors.timescale import TimescaleWriter

        if not endpoints.database_url:
            raise SinkError("no database: set EVTWIN_DATABASE_URL or start the stack with `evtwin services`")
        self.writer = TimescaleWriter(endpoints.database_url, retry_for_s=settings.sink_retry_s,
                                      application_name="evtwin-groundtruth")
        self.counters = CounterDeltas()
        self.max_future_ms = int(settings.max_future_skew_s * 1000)

    def setup(self) -> None:
        self.writer.connect()  # migrations (ev_ground_truth) run here

    def reject(self, topic: str, record: dict[str, Any]) -> str | None:
        return truth_problem(record, int(time.time() * 1000), self.max_future_ms)

    def write(self, batch: SinkBatch) -> None:
        self.writer.write_ground_truth(batch.records)

    def report(self) -> None:
        for table, count in self.writer.rows_written.items():
            SINK_ROWS.labels(table).inc(self.counters.delta(table, count))
        SINK_DB_ERRORS.inc(self.counters.delta("db_errors", self.writer.db_errors))

    def close(self) -> None:
        self.writer.close()


__all__ = ["GroundTruthSink", "truth_problem"]
