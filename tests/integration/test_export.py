"""`evtwin export` against the real embedded PostgreSQL and a real S3 server (SeaweedFS on
loopback): the files read back with pyarrow/pandas equal the table's rows, the S3 objects exist
under the expected keys, and bad arguments fail with one clear line."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest

from connectors.objectstore import ObjectStore
from connectors.timescale import TimescaleWriter
from tests.support.cli import cli_env, run_cli
from tests.support.database import drop_database, fresh_database
from tests.support.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from tests.support.sink_records import alert, ms, prediction

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server(Path(tempfile.mkdtemp(prefix="evtwin-s3-")) / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def db(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database with 3 batteries x 600 readings over 5 hours (some NULLs), and alerts."""
    _, ep = stack
    url = fresh_database(ep.database_url, "evtwin_export")
    rows = []
    for b in range(3):
        for i in range(600):
            when = ms(T0 + timedelta(seconds=30 * i + b))
            rows.append(prediction(f"EXP-{b}", when, soc=50.0 + i % 40 + b / 10, charge_cycles=i,
                                   model_version=None if i % 97 == 0 else "ev-twin@3",
                                   fault_score=i / 600, fault_flag=i % 7 == 0))
    with TimescaleWriter(url, retry_for_s=5) as writer:
        writer.write_predictions(rows)
        writer.write_alerts([alert("a-1", "EXP-1", "OPENED", ms(T0 + timedelta(minutes=5))),
                             alert("a-2", "EXP-2", "OPENED", ms(T0 + timedelta(minutes=9)))])
    yield url
    drop_database(url)


def _table(url: str, start: datetime, end: datetime, battery: str | None = None) -> pd.DataFrame:
    where = "time >= %s AND time < %s" + (" AND battery_id = %s" if battery else "")
    params = (start, end, battery) if battery else (start, end)
    with psycopg.connect(url) as conn:
        cur = conn.execute(f"SELECT * FROM ev_telemetry WHERE {where} ORDER BY time", params)
        frame = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    for col in ("time", "scored_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _same(exported: pd.DataFrame, table: pd.DataFrame) -> None:
    assert list(exported.columns) == list(table.columns)
    assert len(exported) == len(table) > 0
    for col in table.columns:
        left, right = exported[col].reset_index(drop=True), table[col].reset_index(drop=True)
        if col in ("time", "scored_at"):
            assert (pd.to_datetime(left, utc=True) == right).all(), col
        else:
            pd.testing.assert_series_equal(left, right, check_dtype=False, check_names=False, obj=col)


def _export(stack, url: str, *args: str, **env: str):  # type: ignore[no-untyped-def]
    settings, _ = stack
    return run_cli(["export", *args], cli_env(settings.state_dir, EVTWIN_DATABASE_URL=url, **env))


def test_parquet_and_csv_files_equal_the_table_rows(stack, db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=4)
    result = _export(stack, db, "--from", start.isoformat(), "--to", end.isoformat(),
                     "--format", "parquet", "--to-uri", f"file://{tmp_path}/out")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "out" / "telemetry_20261130T230000Z_20261201T020000Z.parquet"
    table = _table(db, start, end)
    assert f"{len(table)} rows" in result.stderr
    _same(pq.read_table(path).to_pandas(), table)
    assert str(pq.read_schema(path).field("time").type) == "timestamp[us, tz=UTC]"

    result = _export(stack, db, "--from", start.isoformat(), "--to", end.isoformat(), "--battery",
                     "EXP-1", "--format", "csv", "--to-uri", f"file://{tmp_path}/one.csv")
    assert result.returncode == 0, result.stderr
    _same(pd.read_csv(tmp_path / "one.csv", keep_default_na=True), _table(db, start, end, "EXP-1"))
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_s3_objects_exist_with_the_expected_keys(stack, db: str, s3: S3Server) -> None:  # type: ignore[no-untyped-def]
    env = {"EVTWIN_S3_ENDPOINT_URL": s3.endpoint, "EVTWIN_S3_ACCESS_KEY_ID": ACCESS_KEY,
           "EVTWIN_S3_SECRET_ACCESS_KEY": SECRET_KEY}
    start, end = T0, T0 + timedelta(days=1)
    for fmt in ("parquet", "csv"):
        result = _export(stack, db, "--from", start.isoformat(), "--to", end.isoformat(),
                         "--format", fmt, "--to-uri", "s3://twin-exports/daily/", **env)
        assert result.returncode == 0, result.stderr
    result = _export(stack, db, "--table", "alerts", "--from", start.isoformat(), "--to",
                     end.isoformat(), "--format", "csv", "--to-uri", "s3://twin-exports/alerts.csv", **env)
    assert result.returncode == 0, result.stderr
    store = ObjectStore("s3://twin-exports", s3.options)
    assert store.list() == [
        "alerts.csv",
        "daily/telemetry_20261130T220000Z_20261201T220000Z.csv",
        "daily/telemetry_20261130T220000Z_20261201T220000Z.parquet",
    ]
    table = _table(db, start, end)
    parquet = pq.read_table(io.BytesIO(store.read("daily/telemetry_20261130T220000Z_20261201T220000Z.parquet")))
    _same(parquet.to_pandas(), table)
    alerts = pd.read_csv(io.BytesIO(store.read("alerts.csv")))
    assert sorted(alerts["alert_id"]) == ["a-1", "a-2"]


def test_bad_arguments_fail_with_one_clear_line(stack, db: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = _export(stack, db, "--from", "2026-12-02", "--to", "2026-12-01", "--to-uri", f"file://{tmp_path}")
    assert result.returncode in (1, 2) and "must be after" in result.stderr
    result = _export(stack, db, "--from", "yesterday", "--to", "2026-12-01", "--to-uri", f"file://{tmp_path}")
    assert result.returncode == 2 and "--from" in result.stderr
    result = _export(stack, db, "--from", "2026-11-30", "--to", "2026-12-01", "--to-uri", "ftp://x/y")
    assert result.returncode == 1 and "file:///… or s3://bucket/prefix" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
