"""The database sink against the real embedded PostgreSQL 18: migrations (idempotent, concurrent,
both flavours consistent), idempotent writes of predictions, state and alerts with both strategies,
the hourly rollup and the sink benchmark. Each module gets its own fresh database."""

from __future__ import annotations

import re
import threading
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
                "('ev_telemetry', 'ev_alerts', 'battery_state', 'ev_telemetry_hourly', "
                "'ev_telemetry_hourly_sums')").fetchall())
            brin = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                "'ev_telemetry_time_brin'").fetchone()
            pk = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE "
                              "conrelid = 'ev_telemetry'::regclass AND contype = 'p'").fetchone()
        versions = [m.version for m in load_migrations()]
        assert first.flavour == "postgresql" and first.applied == versions
        assert second.applied == [] and second.current_version == versions[-1]
        assert rows == [(v, "postgresql") for v in versions]
        assert kinds == {"ev_telemetry": "r", "ev_alerts": "r", "battery_state": "r",
                         "ev_telemetry_hourly": "v", "ev_telemetry_hourly_sums": "r"}
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

# The hourly rollup as the materialized view of migration 0003 computed it from the whole table.
ROLLUP_FROM_TABLE = """
SELECT date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, battery_id,
       count(*), avg(soc), min(soc), max(soc), avg(soh), min(soh), avg(voltage), avg(current),
       avg(temperature), max(temperature), max(charge_cycles), avg(power_consumption),
       avg(rul_prediction), avg(rul_p10), avg(rul_p90), avg(failure_probability),
       max(failure_probability), max(anomaly_score)
FROM ev_telemetry GROUP BY 1, 2 ORDER BY 1, 2"""


def _rollup(url: str, schema: str = "public") -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(the rollup view, the same figures computed from the table), rounded past float noise."""
    def rounded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]

    with psycopg.connect(url, options=f"-c search_path={schema},public") as conn:
        view = conn.execute("SELECT * FROM ev_telemetry_hourly ORDER BY 1, 2").fetchall()
        table = conn.execute(ROLLUP_FROM_TABLE).fetchall()
    return rounded(view), rounded(table)


def test_the_hourly_rollup_follows_every_batch_without_a_refresh(writer: TimescaleWriter, db_url: str) -> None:
    t0 = ms(datetime(2025, 10, 26, 9, 59, tzinfo=UTC))
    writer.write_predictions([prediction("HR_1", t0 + i * 30_000, soc=float(i), seq=i) for i in range(6)])
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT bucket, samples, soc_min, soc_max, soc_avg FROM ev_telemetry_hourly "
                            "WHERE battery_id = 'HR_1' ORDER BY 1").fetchall()
    nine, ten = (datetime(2025, 10, 26, h, tzinfo=UTC) for h in (9, 10))
    assert rows == [(nine, 2, 0.0, 1.0, 0.5), (ten, 4, 2.0, 5.0, 3.5)]


@pytest.mark.parametrize("strategy", ["copy", "executemany"])
def test_the_hourly_rollup_equals_the_table_through_replays_and_late_rows(db_url: str, strategy: str) -> None:
    """Every figure of the view equals what a GROUP BY over ev_telemetry gives (what the
    materialized view held after a refresh) — after replayed batches, duplicates inside a batch
    and readings arriving late for an hour already summed."""
    schema = f"rollup_{strategy}"
    rows = make_predictions(1200, batteries=7, start_ms=ms(datetime(2025, 10, 27, 22, 40, tzinfo=UTC)),
                            step_ms=20_000)
    with TimescaleWriter(db_url, strategy=strategy, schema=schema) as w:
        assert w.write_predictions(rows[200:900] + rows[300:400]) == 700  # duplicates inside a batch
        assert w.write_predictions(rows[200:900]) == 0  # a replay adds nothing
        assert w.write_predictions(rows[:300] + rows[850:]) == 500  # late and new readings
    view, table = _rollup(db_url, schema)
    assert len(view) > 7 and sum(r[2] for r in view) == 1200
    assert view == table

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

