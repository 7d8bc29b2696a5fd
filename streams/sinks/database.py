"""The database sink: predictions into ``ev_telemetry`` and ``battery_state``, alert episodes into
``ev_alerts`` (PostgreSQL or TimescaleDB).

Each batch is one transaction (:class:`connectors.timescale.TimescaleWriter`: binary ``COPY`` into
a staging table, then ``INSERT … ON CONFLICT DO NOTHING``), so a replay after a crash or a
rebalance changes no row. While the database is down the writer retries with backoff; past
``EVTWIN_SINK_RETRY_S`` it gives up and the runner offers the batch again later.

On plain PostgreSQL the same statement adds the batch's new readings to the hourly rollup's sums
(``ev_telemetry_hourly``; migration 0008); TimescaleDB keeps its continuous aggregate itself.
"""

from __future__ import annotations

from typing import ClassVar

from prometheus_client import Counter

from connectors.endpoints import Endpoints
from streams.errors import SinkError
from streams.settings import Settings
from streams.sinks.base import Sink, SinkBatch
from streams.topics import ALERTS, PREDICTIONS

SINK_ROWS = Counter("evtwin_sink_rows", "Rows written (new or changed) by the database sink", ["table"])
SINK_DB_ERRORS = Counter("evtwin_sink_db_errors", "Failed database attempts of the sink")


class CounterDeltas:
    """Turns a connector's cumulative counters into Prometheus counter increments."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def delta(self, name: str, value: float) -> float:
        previous = self.seen.get(name, 0.0)
        self.seen[name] = value
        return max(0.0, value - previous)


class DatabaseSink(Sink):
    """Writes predictions and alerts to PostgreSQL/TimescaleDB, one transaction per batch."""

    name: ClassVar[str] = "database"
    topics: ClassVar[tuple[str, ...]] = (PREDICTIONS, ALERTS)

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        from connectors.timescale import TimescaleWriter

        if not endpoints.database_url:
            raise SinkError("no database: set EVTWIN_DATABASE_URL or start the stack with `evtwin services`")
        self.writer = TimescaleWriter(endpoints.database_url, strategy=settings.sink_strategy,
                                      retry_for_s=settings.sink_retry_s)
        self.counters = CounterDeltas()

    def setup(self) -> None:
        self.writer.connect()  # migrations run here, before any record is consumed

    def write(self, batch: SinkBatch) -> None:
        if batch.topic == PREDICTIONS:
            self.writer.write_predictions(batch.records)
        else:
            self.writer.write_alerts(batch.records)

    def report(self) -> None:
        for table, count in self.writer.rows_written.items():
            SINK_ROWS.labels(table).inc(self.counters.delta(table, count))
        SINK_DB_ERRORS.inc(self.counters.delta("db_errors", self.writer.db_errors))

    def close(self) -> None:
        self.writer.close()


__all__ = ["CounterDeltas", "DatabaseSink"]
