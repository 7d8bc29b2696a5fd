"""The continuous export sink: hourly Parquet files per partition under date= folders, each
record in exactly one file across crashes at every step (a replay after a lost commit, a torn
spool line, a crash between the file's upload and the spool's removal), late records in a second
file; and the same layout on S3 (SeaweedFS on loopback)."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from connectors.objectstore import ObjectStore
from streams.settings import Settings
from streams.sinks.base import SinkBatch
from streams.sinks.export import ExportSink
from streams.topics import PREDICTIONS
from tests.support.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from tests.support.sink_records import prediction

HOUR_S = 3600
T0 = 1_764_720_000  # 2025-12-03T00:00:00Z, a period start


@dataclass
class Msg:
    partition: int
    offset: int


class Topic:
    """Predictions on 2 partitions, spread over three hours of event time."""

    def __init__(self, n: int = 600) -> None:
        self.records: list[tuple[Msg, dict[str, Any]]] = []
        for i in range(n):
            p = i % 2
            ts = (T0 + (i * 3 * HOUR_S) // n) * 1000 + i
            self.records.append((Msg(p, i // 2), prediction(f"EXS-{i % 7}", ts, seq=i)))

    def batch(self, lo: int, hi: int) -> SinkBatch:
        part = self.records[lo:hi]
        return SinkBatch(PREDICTIONS, [r for _, r in part], [m for m, _ in part])


def sink(state_dir: Path, uri: str, now: float, **kw: Any) -> ExportSink:
    s = ExportSink(Settings(state_dir=state_dir, export_uri=uri, export_period_s=HOUR_S,
                            export_grace_s=60, **kw), None)  # type: ignore[arg-type]
    s.clock = lambda: now
    s.setup()
    return s


def exported(store: ObjectStore) -> list[tuple[str, int]]:
    """(event_id, seq) of every row in every file, duplicates kept."""
    rows = []
    for name in store.list():
        table = pq.read_table(io.BytesIO(store.read(name)))
        rows += list(zip(table["event_id"].to_pylist(), table["seq"].to_pylist(), strict=True))
    return rows


def test_hourly_files_exactly_once_across_crashes(tmp_path: Path) -> None:
    topic, uri = Topic(), f"file://{tmp_path}/out"
    state = tmp_path / "state"
    a = sink(state, uri, T0 + 10)
    a.write(topic.batch(0, 250))
    a.flush()
    a.write(topic.batch(250, 300))  # written, never flushed: the runner did not acknowledge
    # crash: no close()

    b = sink(state, uri, T0 + 2 * HOUR_S + 120)  # first two hours closed while down
    assert sorted(b.files_written) == b.files_written and len(b.files_written) == 4  # 2 h x 2 partitions
    b.write(topic.batch(200, 450))  # the runner replays from the last commit: overlaps
    b.flush()
    # a torn last line: the process died in the middle of an append
    spool = next(iter(b.spools.values()))
    b.close()
    with spool.path.open("a") as f:
        f.write('[99999,{"event_id":')

    c = sink(state, uri, T0 + 2 * HOUR_S + 130)
    c.write(topic.batch(300, 600))
    c.flush()
    c.clock = lambda: T0 + 3 * HOUR_S + 61
    assert len(c.roll()) == 2

    store = ObjectStore(uri)
    names = store.list()
    assert all(n.startswith("date=2025-12-03/ev_predictions-20251203T0") for n in names), names
    assert {n.split("-")[4] for n in names} == {"p000", "p001"}
    rows = exported(store)
    want = [(r["event_id"], r["seq"]) for _, r in topic.records]
    assert len(rows) == len(want) and set(rows) == set(want)  # every row once
    table = pq.read_table(tmp_path / "out" / names[0])
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    assert [f.name for f in table.schema][:3] == ["event_id", "battery_id", "timestamp"]


def test_crash_between_upload_and_spool_removal_writes_nothing_twice(tmp_path: Path) -> None:
    topic, uri = Topic(200), f"file://{tmp_path}/out"
    state = tmp_path / "state"
    a = sink(state, uri, T0 + 10)
    a.write(topic.batch(0, 200))
    a.flush()
    a.close()
    saved = tmp_path / "saved"
    shutil.copytree(state, saved)
    a.clock = lambda: T0 + 3 * HOUR_S + 61
    first = a.roll()
    assert len(first) == 6
    # The crash: files uploaded, spools still there (restore them as they were).
    shutil.rmtree(state)
    shutil.copytree(saved, state)
    b = sink(state, uri, T0 + 3 * HOUR_S + 70)
    assert b.files_written == first and not b.spools
    assert len(exported(ObjectStore(uri))) == 200


def test_late_records_go_to_a_second_file_of_their_hour(tmp_path: Path) -> None:
    topic, uri = Topic(40), f"file://{tmp_path}/out"
    s = sink(tmp_path / "state", uri, T0 + HOUR_S + 61)
    s.write(topic.batch(0, 10))  # all in the first hour, already past its grace
    s.flush()
    assert len(s.roll()) == 2
    late = prediction("EXS-late", (T0 + 5) * 1000, seq=999)
    s.write(SinkBatch(PREDICTIONS, [late], [Msg(0, 500)]))
    s.flush()
    assert len(s.roll()) == 1
    names = ObjectStore(uri).list()
    assert len(names) == 3
    assert any(n.endswith("-p000-000000000500-000000000500.parquet") for n in names)
    assert len(exported(ObjectStore(uri))) == 11


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server(Path(tempfile.mkdtemp(prefix="evtwin-s3-")) / "data").start()
    yield server
    server.stop()


def test_s3_objects_have_the_expected_keys(tmp_path: Path, s3: S3Server) -> None:
    topic = Topic(100)
    s = sink(tmp_path / "state", "s3://twin-lake/predictions", T0 + 10, s3_endpoint_url=s3.endpoint,
             s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY)
    s.write(topic.batch(0, 100))
    s.flush()
    s.clock = lambda: T0 + 3 * HOUR_S + 61
    s.roll()
    store = ObjectStore("s3://twin-lake/predictions", s3.options)
    assert store.list() == [
        "date=2025-12-03/ev_predictions-20251203T000000Z-p000-000000000000-000000000016.parquet",
        "date=2025-12-03/ev_predictions-20251203T000000Z-p001-000000000000-000000000016.parquet",
        "date=2025-12-03/ev_predictions-20251203T010000Z-p000-000000000017-000000000033.parquet",
        "date=2025-12-03/ev_predictions-20251203T010000Z-p001-000000000017-000000000032.parquet",
        "date=2025-12-03/ev_predictions-20251203T020000Z-p000-000000000034-000000000049.parquet",
        "date=2025-12-03/ev_predictions-20251203T020000Z-p001-000000000033-000000000049.parquet",
    ]
    assert len(exported(store)) == 100
