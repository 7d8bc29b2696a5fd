"""The database sink: batches of predictions and alerts into PostgreSQL / TimescaleDB.

:class:`TimescaleWriter` writes one batch per transaction, idempotently, so a caller can commit its
Kafka offsets as soon as a ``write_*`` call returns: the batch is durable, and replaying it (after a
crash before the offset commit, a rebalance, …) changes no row.

* ``ev_telemetry``: one row per prediction, ``INSERT … ON CONFLICT DO NOTHING`` on
  ``(time, battery_id)``.
* ``battery_state``: the newest prediction of each battery in the batch, upserted only where it is
  strictly newer than the stored row, so a replay never moves a battery back in time.
* ``ev_alerts``: one row per episode; a RESOLVED record updates an OPENED row once.

Two strategies for predictions (``strategy=``): ``"copy"`` (default, measured faster: binary
``COPY`` into a temporary staging table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING`` and the
state upsert from the same staging rows) and ``"executemany"`` (psycopg 3 pipelined
``executemany`` with ``ON CONFLICT``); ``evtwin bench sink`` compares them.

While the database is unreachable (connection refused, admin shutdown, server starting up), a
write waits with exponential backoff, reconnects and runs the whole batch again; because a batch is
one transaction and every statement is idempotent, nothing is lost or duplicated. The counters
(:attr:`TimescaleWriter.rows_written`, ``db_errors``, ``retries``, ``reconnects``) are plain
attributes for the caller's Prometheus metrics.

The writer is synchronous and thread-safe (one batch at a time). From asyncio (Faust), call it in a
thread: ``await asyncio.to_thread(writer.write_predictions, rows)``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import psycopg
from psycopg import sql

from connectors import ConnectorError
from connectors import timescale_rows as q
from connectors.migrator import MigrationReport, migrate

log = logging.getLogger(__name__)

Strategy = Literal["copy", "executemany"]
STRATEGIES: tuple[str, ...] = ("copy", "executemany")
DEFAULT_STRATEGY: Strategy = "copy"


class DatabaseError(ConnectorError):
    """The database refused a batch for a reason that retrying cannot fix (bad data, a missing
    table, permissions). The batch was rolled back."""


class DatabaseUnavailableError(DatabaseError):
    """The database stayed unreachable for longer than the writer's retry budget."""


class TimescaleWriter:
    """Idempotent batch writer for the sink tables.

    Args:
        database_url: ``postgresql://user:password@host:port/database``.
        strategy: ``"copy"`` (default) or ``"executemany"``.
        schema: Schema for the tables (created if missing); ``None`` = the server's default
            ``search_path`` (``public``).
        run_migrations: Apply :func:`connectors.migrator.migrate` on the first connection.
        retry_for_s: How long one write keeps retrying while the database is unreachable before
            it raises :class:`DatabaseUnavailableError`; ``None`` = forever.
        backoff_initial_s: First wait between attempts, s; doubles up to ``backoff_max_s``.
        backoff_max_s: Longest wait between attempts, s.
        connect_timeout_s: Timeout of one connection attempt, s.
        application_name: Shown in ``pg_stat_activity``.
    """

    def __init__(self, database_url: str, *, strategy: Strategy = DEFAULT_STRATEGY,
                 schema: str | None = None, run_migrations: bool = True,
                 retry_for_s: float | None = 300.0, backoff_initial_s: float = 0.1,
                 backoff_max_s: float = 5.0, connect_timeout_s: float = 5.0,
                 application_name: str = "evtwin-sink") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
        self.database_url = database_url
        self.strategy: Strategy = strategy
        self.schema = schema
        self.run_migrations = run_migrations
        self.retry_for_s = retry_for_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.application_name = application_name
        self.migration: MigrationReport | None = None
        #: New rows per table (``ev_telemetry``, ``battery_state``, ``ev_alerts``): rows inserted
        #: or changed; replayed rows are not counted.
        self.rows_written: dict[str, int] = {"ev_telemetry": 0, "battery_state": 0, "ev_alerts": 0}
        #: Failed attempts (each refused connection or failed batch counts once).
        self.db_errors = 0
        #: Attempts repeated after a transient failure.
        self.retries = 0
        #: Connections opened after the first one.
        self.reconnects = 0
        self.batches = 0
        self._conn: psycopg.Connection | None = None
        self._pending: dict[str, int] = {}
        self._connections = 0
        self._lock = threading.Lock()
        #: Plain PostgreSQL (migration 0008): each batch adds its new readings to the hourly sums.
        self._rollup_sums = False

    # --- public API --------------------------------------------------------------------------

    def write_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write prediction records to ``ev_telemetry`` and ``battery_state`` in one transaction.

        Args:
            rows: Decoded ``prediction`` records (``schemas/prediction.avsc`` field names).

        Returns:
            How many of them were new in ``ev_telemetry`` (0 for a replayed batch).

        Raises:
            ValueError: a record lacks a field of the schema.
            DatabaseError: the database rejected the batch (nothing of it was written).
            DatabaseUnavailableError: the database stayed unreachable for ``retry_for_s``.
            MigrationError: the first connection's migration failed.
        """
        if not rows:
            return 0
        try:
            tuples = q.prediction_tuples(rows)
        except KeyError as exc:
            raise ValueError(f"a prediction record lacks the field {exc}") from None
        work = self._copy_predictions if self.strategy == "copy" else self._executemany_predictions
        return self._run("write_predictions", lambda conn: work(conn, tuples))

    def write_alerts(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write alert records to ``ev_alerts`` in one transaction.

        Args:
            rows: Decoded ``alert`` records (``schemas/alert.avsc`` field names).

        Returns:
            Rows inserted or resolved (0 for a replayed batch).

        Raises:
            DatabaseError: the database rejected the batch.
            DatabaseUnavailableError: the database stayed unreachable for ``retry_for_s``.
        """
        if not rows:
            return 0
        params = q.alert_params(rows)

        def work(conn: psycopg.Connection) -> int:
            with conn.cursor() as cur:
                cur.executemany(q.UPSERT_ALERT, params)
                return self._count(cur, "ev_alerts")

        return self._run("write_alerts", work)

    def write_ground_truth(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write ``ground_truth`` records (the simulator's truth) to ``ev_ground_truth`` in one
        transaction; a replayed record changes nothing.

        Returns:
            Rows new in ``ev_ground_truth``.

        Raises:
            DatabaseError: the database rejected the batch.
            DatabaseUnavailableError: the database stayed unreachable for ``retry_for_s``.
        """
        if not rows:
            return 0
        params = q.ground_truth_params(rows)

        def work(conn: psycopg.Connection) -> int:
            with conn.cursor() as cur:
                cur.executemany(q.INSERT_GROUND_TRUTH, params)
                return self._count(cur, "ev_ground_truth")

        return self._run("write_ground_truth", work)

    def connect(self) -> None:
        """Connect (and migrate) now instead of at the first write; retries like a write."""
        self._run("connect", lambda conn: 0, transaction=False)

    def close(self) -> None:
        """Close the connection. The writer reconnects if used again."""
        with self._lock:
            self._drop_connection()

    def __enter__(self) -> TimescaleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- strategies --------------------------------------------------------------------------

    def _copy_predictions(self, conn: psycopg.Connection, tuples: list[tuple[Any, ...]]) -> int:
        with conn.cursor() as cur:
            with cur.copy(q.COPY_STAGE) as copy:
                copy.set_types(q.STAGE_PG_TYPES)
                for t in tuples:
                    copy.write_row(t)
            if self._rollup_sums:
                cur.execute(q.INSERT_FROM_STAGE_ROLLUP)
                inserted = self._add("ev_telemetry", self._fetch_count(cur))
            else:
                cur.execute(q.INSERT_FROM_STAGE)
                inserted = self._count(cur, "ev_telemetry")
            cur.execute(q.STATE_FROM_STAGE)
            self._count(cur, "battery_state")
        return inserted

    def _executemany_predictions(self, conn: psycopg.Connection,
                                 tuples: list[tuple[Any, ...]]) -> int:
        with conn.cursor() as cur:
            params = [q.without_seq(t) for t in tuples]
            if self._rollup_sums:
                cur.executemany(q.INSERT_VALUES_ROLLUP, params, returning=True)
                new = self._fetch_count(cur)
                while cur.nextset():
                    new += self._fetch_count(cur)
                inserted = self._add("ev_telemetry", new)
            else:
                cur.executemany(q.INSERT_VALUES, params)
                inserted = self._count(cur, "ev_telemetry")
            latest = q.latest_per_battery(tuples)
            cur.executemany(q.STATE_VALUES, [q.without_seq(t) for t in latest])
            self._count(cur, "battery_state")
        return inserted

    @staticmethod
    def _fetch_count(cur: psycopg.Cursor[Any]) -> int:
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def _add(self, table: str, n: int) -> int:
        self._pending[table] = self._pending.get(table, 0) + n
        return n

    def _count(self, cur: psycopg.Cursor[Any], table: str) -> int:
        return self._add(table, max(cur.rowcount, 0))

    # --- connection and retries --------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        options = f"-c search_path={self.schema},public" if self.schema else None
        conn = psycopg.connect(self.database_url, autocommit=True, options=options,
                               connect_timeout=max(1, round(self.connect_timeout_s)),
                               application_name=self.application_name)
        try:
            if self.schema:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(self.schema)))
            if self.run_migrations and self.migration is None:
                self.migration = migrate(conn)
            conn.execute(q.CREATE_STAGE)
            found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (q.ROLLUP_SUMS,)).fetchone()
            self._rollup_sums = bool(found and found[0])
        except BaseException:
            conn.close()
            raise
        self._connections += 1
        if self._connections > 1:
            self.reconnects += 1
            log.info("database: reconnected")
        self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _run(self, what: str, work: Callable[[psycopg.Connection], Any],
             transaction: bool = True) -> Any:
        """Run ``work`` in one transaction; on a transient failure wait, reconnect and rerun it."""
        with self._lock:
            started = time.monotonic()
            delay = self.backoff_initial_s
            while True:
                self._pending = {}
                try:
                    conn = self._connection()
                    if not transaction:
                        return work(conn)
                    with conn.transaction():
                        result = work(conn)
                except psycopg.OperationalError as exc:  # connection lost/refused, shutdown, …
                    delay = self._wait_to_retry(what, exc, started, delay)
                    continue
                except psycopg.Error as exc:
                    self.db_errors += 1
                    raise DatabaseError(f"{what}: {_first_line(exc)}") from exc
                for table, n in self._pending.items():
                    self.rows_written[table] = self.rows_written.get(table, 0) + n
                self.batches += 1
                return result

    def _wait_to_retry(self, what: str, exc: psycopg.OperationalError, started: float,
                       delay: float) -> float:
        """Count the failure, drop a broken connection, sleep ``delay`` (with jitter, so replicas
        do not retry in step) and return the next delay; raise when the budget is spent."""
        self.db_errors += 1
        if self._conn is not None and self._conn.broken:
            self._drop_connection()
        waited = time.monotonic() - started
        if self.retry_for_s is not None and waited + delay > self.retry_for_s:
            raise DatabaseUnavailableError(
                f"{what}: database unreachable for {waited:.0f} s: {_first_line(exc)}"
            ) from exc
        self.retries += 1
        log.warning("database: %s failed (%s); retry in %.1f s", what, _first_line(exc), delay)
        time.sleep(delay * random.uniform(0.8, 1.2))
        return min(delay * 2, self.backoff_max_s)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "DEFAULT_STRATEGY", "STRATEGIES", "DatabaseError", "DatabaseUnavailableError",
    "TimescaleWriter", "migrate",
]
