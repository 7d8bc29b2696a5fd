"""Reports from the simulator (``ev.reported.v1``) into ``battery_desired_state``, and on to the
WebSocket clients as ``reported`` messages.

The API's one consumer (:class:`streams.api.hub.LiveConsumer`) reads every partition of the
reports topic from its beginning (assigned, no consumer group: an embedded noida-db keeps a killed
member's partitions for ever) and hands the decoded reports to :meth:`ReportedStore.store`, which
stores each idempotently (a report older than the stored one changes nothing): a report that
arrived while the API was down is stored when it comes back.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from streams.api.desired import record_reported, reported_view_json
from streams.api.hub import Hub

log = logging.getLogger(__name__)


class ReportedStore:
    """Stores reports and tells the WebSocket hub.

    Args:
        database_url: Where ``battery_desired_state`` is.
        hub: The WebSocket hub.
        stop_event: Set when the API stops (ends a wait for the database).
    """

    def __init__(self, database_url: str, hub: Hub, stop_event: threading.Event) -> None:
        self.database_url = database_url
        self.hub = hub
        self.stop_event = stop_event
        self.stored = 0
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5,
                                         application_name="evtwin-api-reported")
        return self._conn

    def store(self, records: list[dict[str, Any]]) -> None:
        """Store ``records`` (decoded ``command_reported``); while the database is away, retry
        (the consumer waits: nothing is lost)."""
        while not self.stop_event.is_set():
            try:
                conn = self._connection()
                record_reported(conn, records)
                self.stored += len(records)
                for battery_id in {r["battery_id"] for r in records}:
                    self.hub.publish_frame(battery_id, reported_view_json(battery_id, conn))
                return
            except psycopg.OperationalError as exc:
                log.warning("reports: database unavailable (%s); retrying", exc)
                self._conn = None
                self.stop_event.wait(1.0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


__all__ = ["ReportedStore"]
