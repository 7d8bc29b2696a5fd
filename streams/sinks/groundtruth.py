"""The ground-truth sink: the simulator's true state (``ev.groundtruth.v1``) into ``ev_ground_truth``.

Retraining (``evtwin retrain``) labels what the twin collected by joining ``ev_telemetry`` with this
table on ``(time, battery_id)``. It runs in its own consumer group (``evtwin sink --kind
groundtruth``, and in ``evtwin up`` when retraining is scheduled), so a backlog of truth never
holds the predictions back. One transaction per batch, ``ON CONFLICT DO NOTHING``: a replay
changes no row.
"""

from __future__ import annotations

from typing import ClassVar

from connectors.endpoints import Endpoints
from streams.errors import SinkError
from streams.settings import Settings
from streams.sinks.base import Sink, SinkBatch
from streams.sinks.database import SINK_DB_ERRORS, SINK_ROWS, CounterDeltas
from streams.topics import GROUND_TRUTH


class GroundTruthSink(Sink):
    """Writes ground-truth records to ``ev_ground_truth``, one transaction per batch."""

    name: ClassVar[str] = "groundtruth"
    topics: ClassVar[tuple[str, ...]] = (GROUND_TRUTH,)

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        from connectors.timescale import TimescaleWriter

        if not endpoints.database_url:
            raise SinkError("no database: set EVTWIN_DATABASE_URL or start the stack with `evtwin services`")
        self.writer = TimescaleWriter(endpoints.database_url, retry_for_s=settings.sink_retry_s,
                                      application_name="evtwin-groundtruth")
        self.counters = CounterDeltas()

    def setup(self) -> None:
        self.writer.connect()  # migrations (ev_ground_truth) run here

    def write(self, batch: SinkBatch) -> None:
        self.writer.write_ground_truth(batch.records)

    def report(self) -> None:
        for table, count in self.writer.rows_written.items():
            SINK_ROWS.labels(table).inc(self.counters.delta(table, count))
        SINK_DB_ERRORS.inc(self.counters.delta("db_errors", self.writer.db_errors))

    def close(self) -> None:
        self.writer.close()


__all__ = ["GroundTruthSink"]
