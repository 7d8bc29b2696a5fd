"""The database sink survives a database outage: a private embedded PostgreSQL is stopped for a few
seconds while a writer is busy, then started again; every row arrives exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from connectors.embedded import postgres_server
from connectors.embedded.postgres_server import PostgresServer
from connectors.embedded.process import free_port
from connectors.sink_bench import make_predictions
from connectors.timescale import DatabaseUnavailableError, TimescaleWriter
from streams.settings import Settings


@pytest.fixture
def private_postgres(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresServer]:
    # Restart on the same port at once: the server's closed connections may sit in TIME_WAIT on
    # it, which PostgreSQL's own bind (SO_REUSEADDR) accepts but the stack's free-port probe not.
    monkeypatch.setattr(postgres_server, "port_for",
                        lambda requested, *args: requested or free_port())
    settings = Settings(state_dir=state_dir)
    server = PostgresServer(state_dir / "postgres", 0, settings.postgres_bin_dir,
                            settings.postgres_os_user)
    server.start()
    try:
        server.wait_ready(30)
        server.requested_port = server.port  # restart on the same port: the URL stays valid
        yield server
    finally:
        server.stop()


def test_rows_written_across_a_database_outage_arrive_exactly_once(private_postgres: PostgresServer) -> None:
    url = private_postgres.url
    start_ms = int(datetime(2025, 10, 27, tzinfo=UTC).timestamp() * 1000)
    rows = make_predictions(30_000, batteries=50, start_ms=start_ms)
    batches = [rows[i:i + 500] for i in range(0, len(rows), 500)]
    writer = TimescaleWriter(url, retry_for_s=60, backoff_initial_s=0.05, backoff_max_s=0.5)
    writer.connect()
    done = threading.Event()
    written: list[int] = []
    failures: list[BaseException] = []

    def sink() -> None:
        try:
            for batch in batches:
                written.append(writer.write_predictions(batch))
                time.sleep(0.02)  # a sink waits for its next micro-batch
        except BaseException as exc:  # noqa: BLE001 - asserted below
            failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    while len(written) < 5:
        time.sleep(0.01)
    private_postgres.stop()  # fast shutdown: open connections get "terminating connection"
    outage_started = len(written)
    time.sleep(3)
    during_outage = len(written)
    private_postgres.start()
    private_postgres.wait_ready(30)
    assert done.wait(60)
    thread.join(5)
    writer.close()

    assert failures == []
    assert during_outage == outage_started  # the writer waited instead of failing or skipping
    assert len(written) == len(batches)
    assert writer.retries > 0 and writer.db_errors > 0 and writer.reconnects >= 1
    with psycopg.connect(url) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM ev_telemetry").fetchone()  # type: ignore[misc]
        states = conn.execute("SELECT count(*), min(time), max(time) FROM battery_state").fetchone()
    assert (total, distinct) == (30_000, 30_000)
    # A batch whose commit landed just as the server went away counts 0 on its (idempotent)
    # retry; nothing is ever counted twice.
    assert 30_000 - 500 <= sum(written) <= 30_000
    assert states is not None and states[0] == 50
    assert states[1] == states[2]  # every battery's state is at the last tick


def test_a_database_that_stays_away_ends_in_one_clear_error() -> None:
    url = f"postgresql://evtwin:nopassword@127.0.0.1:{free_port()}/evtwin"
    writer = TimescaleWriter(url, retry_for_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="database unreachable for"):
        writer.write_predictions(make_predictions(10))
    assert time.monotonic() - t0 < 10  # the budget (1 s) plus one connection attempt
    assert writer.retries >= 1 and writer.db_errors == writer.retries + 1
    assert writer.rows_written["ev_telemetry"] == 0
