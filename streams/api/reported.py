"""Reports from the simulator (``ev.reported.v1``) into ``battery_desired_state``, and on to the
WebSocket clients as ``reported`` messages.

Each API process reads every partition from its beginning (assigned, no consumer group: an
embedded noida-db keeps a killed member's partitions for ever) and stores each report
idempotently (a report older than the stored one changes nothing), so a report that arrived while
the API was down is stored when it comes back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.api.desired import record_reported, reported_view_json
from streams.api.hub import Hub
from streams.topics import REPORTED

log = logging.getLogger(__name__)


class ReportedConsumer:
    """Stores every report and tells the WebSocket hub.

    Args:
        consumer: A confluent-kafka consumer (partitions are assigned from their beginning).
        codec: Codec of the ``command_reported`` schema.
        database_url: Where ``battery_desired_state`` is.
        hub: The WebSocket hub.
    """

    def __init__(self, consumer: Any, codec: Any, database_url: str, hub: Hub,
                 partitions: int) -> None:
        self.consumer = consumer
        self.codec = codec
        self.database_url = database_url
        self.hub = hub
        self.stored = 0
        self.stop_event = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        consumer.assign([TopicPartition(REPORTED, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.thread = threading.Thread(target=self._run, name="api-reported-consumer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5,
                                         application_name="evtwin-api-reported")
        return self._conn

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                messages = self.consumer.consume(num_messages=500, timeout=0.2)
            except Exception as exc:
                log.warning("reported consumer: %s", exc)
                time.sleep(0.5)
                continue
            records = []
            for msg in messages:
                if msg.error() is not None:
                    continue
                try:
                    records.append(self.codec.decode(msg.value()))
                except Exception as exc:
                    log.warning("undecodable report %s[%d]@%d: %s", msg.topic(), msg.partition(),
                                msg.offset(), exc)
            if records:
                self._store(records)

    def _store(self, records: list[dict[str, Any]]) -> None:
        while not self.stop_event.is_set():
            try:
                conn = self._connection()
                record_reported(conn, records)
                self.stored += len(records)
                for battery_id in {r["battery_id"] for r in records}:
                    self.hub.publish_frame(battery_id, reported_view_json(battery_id, conn))
                return
            except psycopg.OperationalError as exc:  # the database is away: retry, lose nothing
                log.warning("reported consumer: database unavailable (%s); retrying", exc)
                self._conn = None
                self.stop_event.wait(1.0)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        with contextlib.suppress(Exception):
            self.consumer.close()
        if self._conn is not None:
            self._conn.close()


__all__ = ["ReportedConsumer"]
