"""The database sink against the real embedded PostgreSQL 18: migrations (idempotent, concurrent,
both flavours consistent), idempotent writes of predictions, state and alerts with both strategies,
the hourly rollup and the sink benchmark. Each module gets its own fresh database."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from connectors.migrator import (
    FLAVOURS,
    MIGRATIONS_DIR,
    MigrationError,
    load_migrations,
    migrate,
    refresh_rollup,
)
from connectors.sink_bench import make_predictions, run_sink_bench
from connectors.timescale import DatabaseError, TimescaleWriter
from tests.support.database import drop_database, fresh_database
from tests.support.sink_records import EPOCH, alert, ms, prediction


def table_snapshot(url: str, table: str, schema: str = "public") -> list[tuple[Any, ...]]:
    """Every row of ``table`` with its ``xmin`` (changes whenever a row is rewritten)."""
    with psycopg.connect(url) as conn:
        query = sql.SQL("SELECT xmin::text, * FROM {} ORDER BY 2, 3").format(
            sql.Identifier(schema, table))
        return conn.execute(query).fetchall()


def table_columns(url: str, table: str) -> list[str]:
    """The columns of ``table`` in table order."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(table)))
        return [d.name for d in cur.description or ()]


@pytest.fixture(scope="module")
def db_url(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    _, ep = stack
    url = fresh_database(ep.database_url, "evtwin_ts")
    yield url
    drop_database(url)


@pytest.fixture
def writer(db_url: str) -> Iterator[TimescaleWriter]:
    with TimescaleWriter(db_url, retry_for_s=5) as w:
        yield w


# --- migrations ------------------------------------------------------------------------------------

def test_every_migration_has_a_common_file_or_one_per_flavour() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    for m in migrations:
        assert set(m.files) in ({"any"}, set(FLAVOURS)), m


def _select_aliases(path: Any) -> list[str]:
    body = path.read_text().split("SELECT", 1)[1].split("FROM ev_telemetry", 1)[0]
    return [m.group(1) if m.group(1) else m.group(2)
            for m in re.finditer(r"AS (\w+)\s*,?\s*$|^\s*(battery_id),?$", body, re.M)]


def test_hourly_rollup_has_the_same_columns_on_timescaledb_and_postgresql() -> None:
    timescale = _select_aliases(MIGRATIONS_DIR / "0003_hourly_rollup.timescaledb.sql")
    plain = _select_aliases(MIGRATIONS_DIR / "0003_hourly_rollup.postgresql.sql")
    assert timescale == plain
    assert timescale[:3] == ["bucket", "battery_id", "samples"] and len(timescale) == 20


def test_migrate_builds_the_plain_postgresql_layout_once(stack) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database(stack[1].database_url, "evtwin_mig")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            first = migrate(conn)
            second = migrate(conn)
            rows = conn.execute("SELECT version, flavour FROM schema_migrations ORDER BY 1").fetchall()
            kinds = dict(conn.execute(
                "SELECT relname, relkind::text FROM pg_class WHERE relname IN "
                "('ev_telemetry', 'ev_alerts', 'battery_state', 'ev_telemetry_hourly')").fetchall())
            brin = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                "'ev_telemetry_time_brin'").fetchone()
            pk = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE "
                              "conrelid = 'ev_telemetry'::regclass AND contype = 'p'").fetchone()
        versions = [m.version for m in load_migrations()]
        assert first.flavour == "postgresql" and first.applied == versions
        assert second.applied == [] and second.current_version == versions[-1]
        assert rows == [(v, "postgresql") for v in versions]
        assert kinds == {"ev_telemetry": "r", "ev_alerts": "r", "battery_state": "r",
                         "ev_telemetry_hourly": "m"}
        assert brin is not None and "USING brin" in brin[0]
        assert pk == ("PRIMARY KEY (\"time\", battery_id)",)
    finally:
        drop_database(url)


def test_replicas_starting_together_apply_each_migration_once(stack) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database(stack[1].database_url, "evtwin_race")
    reports: list[Any] = []
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def replica() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                go.wait()
                reports.append(migrate(conn))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=replica) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        versions = [m.version for m in load_migrations()]
        assert sorted(v for r in reports for v in r.applied) == versions
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(versions),)
    finally:
        drop_database(url)


# --- predictions and state ------------------------------------------------------------------------

def test_predictions_land_exactly_and_state_holds_the_newest(writer: TimescaleWriter, db_url: str) -> None:
    t0 = ms(datetime(2025, 10, 20, 10, 30, 15, 123000, tzinfo=UTC))
    rows = [prediction("RT_A", t0 + i * 1000, seq=i, soc=80.0 - i, charge_cycles=150 + i)
            for i in range(5)]
    rows[-1].update(fault_score=0.61, fault_flag=True)
    rows += [prediction("RT_B", t0 + 500, rul_cycles=321.5, rul_p10=300.25, rul_p90=350.75)]
    del rows[-1]["fault_score"], rows[-1]["fault_flag"]  # a hand-made record without them: defaults
    assert writer.write_predictions(rows) == 6
    with psycopg.connect(db_url) as conn:
        got = conn.execute(
            "SELECT time, soc, charge_cycles, rul_prediction, rul_p10, rul_p90, scored_at, event_id, "
            "model_version, fault_score, fault_flag FROM ev_telemetry WHERE battery_id = 'RT_B'").fetchone()
        state = conn.execute("SELECT battery_id, time, soc, charge_cycles, fault_score, fault_flag "
                             "FROM battery_state WHERE battery_id LIKE 'RT\\_%' ORDER BY 1").fetchall()
        count = conn.execute("SELECT count(*) FROM ev_telemetry WHERE battery_id LIKE 'RT\\_%'").fetchone()
    when = datetime(2025, 10, 20, 10, 30, 15, 623000, tzinfo=UTC)
    assert got == (when, 80.0, 150, 321.5, 300.25, 350.75, when + timedelta(milliseconds=35),
                   rows[-1]["event_id"], "ev-twin@1", 0.0, False)
    assert count == (6,)
    assert state == [("RT_A", EPOCH + timedelta(milliseconds=t0 + 4000), 76.0, 154, 0.61, True),
                     ("RT_B", when, 80.0, 150, 0.0, False)]
    assert writer.rows_written == {"ev_telemetry": 6, "battery_state": 2, "ev_alerts": 0}


def test_replaying_a_batch_changes_no_row(writer: TimescaleWriter, db_url: str) -> None:
    t0 = ms(datetime(2025, 10, 21, tzinfo=UTC))
    rows = [prediction(f"RP_{i % 7}", t0 + (i // 7) * 1000, seq=i // 7) for i in range(700)]
    assert writer.write_predictions(rows) == 700
    before = (table_snapshot(db_url, "ev_telemetry"), table_snapshot(db_url, "battery_state"))
    assert writer.write_predictions(rows) == 0
    assert writer.write_predictions(rows[100:300]) == 0
    after = (table_snapshot(db_url, "ev_telemetry"), table_snapshot(db_url, "battery_state"))
    assert after == before  # same rows, same xmin: nothing was even rewritten


def test_an_older_batch_never_moves_a_battery_back(writer: TimescaleWriter, db_url: str) -> None:
    t0 = ms(datetime(2025, 10, 22, tzinfo=UTC))
    writer.write_predictions([prediction("OLD_1", t0 + 60_000, soc=50.0)])
    assert writer.write_predictions([prediction("OLD_1", t0, soc=90.0),
                                     prediction("OLD_1", t0 + 30_000, soc=70.0)]) == 2
    with psycopg.connect(db_url) as conn:
        state = conn.execute("SELECT time, soc FROM battery_state WHERE battery_id = 'OLD_1'").fetchone()
        history = conn.execute("SELECT count(*) FROM ev_telemetry WHERE battery_id = 'OLD_1'").fetchone()
    assert state == (EPOCH + timedelta(milliseconds=t0 + 60_000), 50.0)
    assert history == (3,)  # the late readings still join the history


def test_both_strategies_write_the_same_rows(db_url: str) -> None:
    rows = make_predictions(3000, batteries=40, start_ms=ms(datetime(2025, 10, 23, tzinfo=UTC)))
    rows += rows[:500]  # duplicates inside one batch
    snapshots = []
    for strategy in ("copy", "executemany"):
        schema = f"strategy_{strategy}"
        with TimescaleWriter(db_url, strategy=strategy, schema=schema) as w:
            assert w.write_predictions(rows) == 3000
            assert w.write_predictions(rows[:1000]) == 0
        snapshots.append([
            [row[1:] for row in table_snapshot(db_url, table, schema)]
            for table in ("ev_telemetry", "battery_state")
        ])
    copy_rows, many_rows = snapshots
    assert len(copy_rows[0]) == 3000 and len(copy_rows[1]) == 40
    updated = table_columns(db_url, "battery_state").index("updated_at")
    strip = [[r[:updated] + r[updated + 1:] for r in rows] for rows in (copy_rows[1], many_rows[1])]
    assert copy_rows[0] == many_rows[0] and strip[0] == strip[1]


def test_bad_data_is_a_database_error_and_nothing_of_the_batch_is_kept(writer: TimescaleWriter, db_url: str) -> None:
    t0 = ms(datetime(2025, 10, 24, tzinfo=UTC))
    rows = [prediction("BAD_OK", t0), prediction("B" * 60, t0)]  # battery_id is VARCHAR(50)
    with pytest.raises(DatabaseError, match="too long"):
        writer.write_predictions(rows)
    assert writer.db_errors == 1 and writer.retries == 0
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM ev_telemetry WHERE battery_id = 'BAD_OK'").fetchone() == (0,)
    assert writer.write_predictions(rows[:1]) == 1  # the writer is still usable


# --- alerts ----------------------------------------------------------------------------------------

def test_an_alert_episode_opens_resolves_once_and_ignores_replays(writer: TimescaleWriter, db_url: str) -> None:
    t0 = ms(datetime(2025, 10, 25, 8, tzinfo=UTC))
    opened = alert("a-1", "AL_1", "OPENED", t0)
    resolved = alert("a-1", "AL_1", "RESOLVED", t0, t0 + 90_000, value=55.0)
    both = [alert("a-2", "AL_2", "OPENED", t0), alert("a-2", "AL_2", "RESOLVED", t0, t0 + 5000)]
    assert writer.write_alerts([opened]) == 1
    assert writer.write_alerts([resolved]) == 1
    assert writer.write_alerts([opened, resolved]) == 0  # replay: no change
    assert writer.write_alerts(both) == 1  # opened and resolved inside one batch
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT alert_id, status, value, opened_at, resolved_at FROM ev_alerts "
                            "WHERE battery_id LIKE 'AL\\_%' ORDER BY 1").fetchall()
    start = EPOCH + timedelta(milliseconds=t0)
    assert rows == [("a-1", "RESOLVED", 61.5, start, start + timedelta(seconds=90)),
                    ("a-2", "RESOLVED", 61.5, start, start + timedelta(seconds=5))]
    assert writer.rows_written["ev_alerts"] == 3


# --- rollup and benchmark --------------------------------------------------------------------------

def test_refresh_rollup_aggregates_per_battery_and_hour(writer: TimescaleWriter, db_url: str) -> None:
    t0 = ms(datetime(2025, 10, 26, 9, 59, tzinfo=UTC))
    writer.write_predictions([prediction("HR_1", t0 + i * 30_000, soc=float(i), seq=i) for i in range(6)])
    assert writer.refresh_rollup() is True
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT bucket, samples, soc_min, soc_max FROM ev_telemetry_hourly "
                            "WHERE battery_id = 'HR_1' ORDER BY 1").fetchall()
        assert refresh_rollup(conn) is True  # again, with a plain connection
    nine, ten = (datetime(2025, 10, 26, h, tzinfo=UTC) for h in (9, 10))
    assert rows == [(nine, 2, 0.0, 1.0), (ten, 4, 2.0, 5.0)]


def test_the_rollup_refresh_takes_a_bounded_share_of_the_time(db_url: str) -> None:
    """A refresh reads the whole table: after one that took t, the writer skips refreshes for
    (ROLLUP_SHARE - 1) t, so a growing table cannot take the sink's time."""
    from connectors.timescale import ROLLUP_SHARE

    with TimescaleWriter(db_url) as writer:
        started = time.monotonic()
        assert writer.refresh_rollup() is True
        took = time.monotonic() - started
        if time.monotonic() < started + (ROLLUP_SHARE - 1) * took * 0.9:  # not descheduled meanwhile
            assert writer.refresh_rollup() is False  # too soon: skipped
        time.sleep(ROLLUP_SHARE * took + 0.05)
        assert writer.refresh_rollup() is True


@pytest.mark.parametrize("strategy", ["copy", "executemany"])
def test_sink_bench_writes_every_row_and_cleans_up(db_url: str, strategy: str) -> None:
    seen: list[int] = []
    result = run_sink_bench(db_url, rows=10_000, batch=2500, strategy=strategy,  # type: ignore[arg-type]
                            progress=seen.append)
    assert result["rows"] == 10_000 and result["strategy"] == strategy
    assert result["rows_per_s"] > 0 and result["flavour"] == "postgresql"
    assert seen == [2500, 5000, 7500, 10_000]
    with psycopg.connect(db_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'evtwin_bench_%'").fetchone()
    assert left == (0,)


def test_migration_files_missing_from_an_install_is_one_clear_error(tmp_path: Any) -> None:
    with pytest.raises(MigrationError, match="no migration files"):
        load_migrations(tmp_path)
    (tmp_path / "0001_x.sql").write_text("SELECT 1")
    (tmp_path / "0002_y.timescaledb.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="one file per flavour"):
        load_migrations(tmp_path)


def test_batches_are_written_while_a_rollup_refresh_is_in_progress(db_url: str, tmp_path: Any) -> None:
    """The refresh reads the whole table (seconds on a large one); batches must not wait for it.
    Here the refresh is held on the lock of another session's refresh, whose transaction stays
    open; a batch written meanwhile lands at once."""
    from connectors.endpoints import Endpoints
    from streams.settings import Settings
    from streams.sinks.base import SinkBatch
    from streams.sinks.database import DatabaseSink
    from streams.topics import PREDICTIONS

    sink = DatabaseSink(Settings(state_dir=tmp_path, sink_retry_s=10),
                        Endpoints(kafka_bootstrap_servers="unused:9092", database_url=db_url, mqtt_url=None,
                                  schema_registry_url=None, mlflow_tracking_uri=None))
    sink.setup()
    (interval, refresh), = sink.timers()
    t0 = ms(datetime(2025, 11, 2, 8, 0, tzinfo=UTC))
    with psycopg.connect(db_url) as holder:
        holder.execute("REFRESH MATERIALIZED VIEW ev_telemetry_hourly")  # its lock: until commit
        refreshing = threading.Thread(target=refresh)
        refreshing.start()
        try:
            time.sleep(0.3)
            assert refreshing.is_alive()  # waiting for the lock
            batch = SinkBatch(PREDICTIONS, [prediction("RF_1", t0 + i * 1000, seq=i) for i in range(5)])
            writing = threading.Thread(target=sink.write, args=(batch,), daemon=True)
            writing.start()
            writing.join(10)
            written = not writing.is_alive()
            assert refreshing.is_alive()  # still waiting: the batch did not wait for it to end
        finally:
            holder.commit()
            refreshing.join(30)
            writing.join(30)
    assert written, "the batch waited for the rollup refresh"
    assert not refreshing.is_alive()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM ev_telemetry WHERE battery_id = 'RF_1'").fetchone() == (5,)
    assert sink.rollup.db_errors == 0 and sink.writer.db_errors == 0
    sink.close()
