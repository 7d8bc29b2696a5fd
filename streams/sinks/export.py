"""The continuous export sink: predictions as hourly Parquet files, partitioned by date, on a
local folder or S3 (``EVTWIN_EXPORT_URI``), each row in exactly one file across restarts.

Layout: ``<uri>/date=YYYY-MM-DD/ev_predictions-<period start>-p<partition>-<first offset>-<last
offset>.parquet`` — one file per Kafka partition and period of *event* time
(``EVTWIN_EXPORT_PERIOD_S``, an hour by default), readable as a Hive-partitioned dataset.

How "exactly once per file" holds:

- ``write`` appends each record, with its offset, to a local *spool* file of its (partition,
  period) under the state directory; ``flush`` fsyncs the spools and then stores, atomically, the
  highest offset spooled per partition (the *watermark*). The runner acknowledges the batch only
  after that, so an acknowledged record is always on disk.
- A replayed record (offset at or below the watermark: a crash before the commit reached the
  broker, a rebalance) is skipped. On start the watermark is also raised to what the spools hold,
  covering a crash between the spool's fsync and the watermark's write; a torn last line is cut.
- A period's spool becomes its Parquet file once wall time is ``EVTWIN_EXPORT_GRACE_S`` past the
  period's end; the file name is a function of the spool's content (partition, period, first and
  last offset) and the file appears atomically, and only then is the spool deleted. A crash in
  between re-creates the same name at the next start (before any record is consumed), finds it
  there, and only deletes the spool. Records later than the grace open a new spool: a second file
  for that hour with later offsets, never a duplicate row.

One export sink per state directory (its spools are local); it follows its consumer group's
partitions, but a partition handed to another replica would re-export that replica's
unacknowledged tail: run one replica.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar

from prometheus_client import Counter

from connectors.endpoints import Endpoints
from connectors.objectstore import ObjectStore, S3Options
from schemas import load_schema
from streams.errors import SinkError
from streams.settings import Settings
from streams.sinks.base import Sink, SinkBatch
from streams.topics import PREDICTIONS

EXPORT_ROWS = Counter("evtwin_export_rows", "Rows written to exported Parquet files")
EXPORT_FILES = Counter("evtwin_export_files", "Parquet files the export sink wrote")
CHUNK_ROWS = 50_000


def arrow_schema_of(schema: str) -> Any:
    """The Arrow schema of an Avro record schema (timestamps as UTC milliseconds)."""
    import pyarrow as pa

    simple = {"string": pa.string(), "long": pa.int64(), "int": pa.int32(),
              "double": pa.float64(), "float": pa.float32(), "boolean": pa.bool_()}
    out = []
    for f in load_schema(schema)["fields"]:
        t = f["type"]
        nullable = isinstance(t, list)
        if nullable:
            t = next(x for x in t if x != "null")
        if isinstance(t, dict) and t.get("logicalType") == "timestamp-millis":
            arrow = pa.timestamp("ms", tz="UTC")
        elif isinstance(t, dict) and t.get("type") == "enum":
            arrow = pa.string()
        else:
            arrow = simple[t if isinstance(t, str) else t["type"]]
        out.append(pa.field(f["name"], arrow, nullable=True))
    return pa.schema(out)


def period_start(ts_ms: int, period_s: int) -> int:
    """Start of the period holding ``ts_ms``, epoch seconds."""
    return (ts_ms // 1000) // period_s * period_s


def file_name(partition: int, start_s: int, first: int, last: int) -> str:
    start = datetime.fromtimestamp(start_s, UTC)
    return (f"date={start:%Y-%m-%d}/ev_predictions-{start:%Y%m%dT%H%M%SZ}-p{partition:03d}-"
            f"{first:012d}-{last:012d}.parquet")


class Spool:
    """The records of one (partition, period) so far: ``[offset, record]`` JSON lines."""

    def __init__(self, path: Path, partition: int, start_s: int) -> None:
        self.path, self.partition, self.start_s = path, partition, start_s
        self.first, self.last = self._scan()
        self.file: IO[str] | None = None

    def _scan(self) -> tuple[int, int]:
        """First and last offset in the file; a torn last line (a crash mid-write) is cut."""
        first = last = -1
        if not self.path.exists():
            return first, last
        good = 0
        with self.path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                offset = json.loads(line)[0]
                first = offset if first < 0 else first
                last = offset
                good += len(line)
        if good != self.path.stat().st_size:
            os.truncate(self.path, good)
        return first, last

    def append(self, offset: int, record: dict[str, Any]) -> None:
        if self.file is None:
            self.file = self.path.open("a")
        self.file.write(json.dumps([offset, record], separators=(",", ":")) + "\n")
        self.first = offset if self.first < 0 else self.first
        self.last = offset

    def sync(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def records(self, chunk: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
        with self.path.open() as f:
            rows = []
            for line in f:
                rows.append(json.loads(line)[1])
                if len(rows) >= chunk:
                    yield rows
                    rows = []
            if rows:
                yield rows


class ExportSink(Sink):
    """Spools predictions per (partition, period) and writes each closed period as one Parquet
    file per partition (see the module docstring)."""

    name: ClassVar[str] = "export"
    topics: ClassVar[tuple[str, ...]] = (PREDICTIONS,)

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        if not settings.export_uri:
            raise SinkError("no destination: set EVTWIN_EXPORT_URI (file:///dir or s3://bucket/prefix)")
        self.store = ObjectStore(settings.export_uri, S3Options(
            settings.s3_endpoint_url,
            settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None,
            settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None,
            settings.s3_region))
        self.period_s, self.grace_s = settings.export_period_s, settings.export_grace_s
        self.dir = settings.state_dir / "export" / "spool"
        self.state_path = self.dir.parent / "watermarks.json"
        self.spools: dict[tuple[int, int], Spool] = {}
        self.watermarks: dict[int, int] = {}
        self.lock = threading.Lock()
        self.schema = arrow_schema_of("prediction")
        self.clock: Callable[[], float] = time.time
        self.files_written: list[str] = []

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store.prepare()
        if self.state_path.exists():
            self.watermarks = {int(p): int(o) for p, o in json.loads(self.state_path.read_text()).items()}
        for path in sorted(self.dir.glob("p*-s*.jsonl")):
            partition, start = path.stem.split("-")
            spool = Spool(path, int(partition[1:]), int(start[1:]))
            self.spools[(spool.partition, spool.start_s)] = spool
            if spool.last >= 0:
                self.watermarks[spool.partition] = max(self.watermarks.get(spool.partition, -1), spool.last)
        self.roll()  # periods that closed while we were down: before any new record

    def write(self, batch: SinkBatch) -> None:
        with self.lock:
            for rec, msg in zip(batch.records, batch.messages, strict=True):
                partition, offset = int(msg.partition), int(msg.offset)
                if offset <= self.watermarks.get(partition, -1):
                    continue  # already spooled or exported: a replay
                key = (partition, period_start(int(rec["timestamp"]), self.period_s))
                spool = self.spools.get(key)
                if spool is None:
                    spool = self.spools[key] = Spool(self.dir / f"p{key[0]}-s{key[1]}.jsonl", *key)
                spool.append(offset, rec)
                self.watermarks[partition] = offset

    def flush(self) -> None:
        with self.lock:
            for spool in self.spools.values():
                spool.sync()
            tmp = self.state_path.with_suffix(".tmp")
            with tmp.open("w") as f:
                json.dump(self.watermarks, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)

    def roll(self) -> list[str]:
        """Write the Parquet file of every spool whose period closed (plus the grace); return
        the names written."""
        with self.lock:
            now = self.clock()
            due = [s for s in self.spools.values() if s.start_s + self.period_s + self.grace_s <= now]
            written = []
            for spool in sorted(due, key=lambda s: (s.start_s, s.partition)):
                spool.sync()
                spool.close()
                if spool.last >= 0:
                    name = file_name(spool.partition, spool.start_s, spool.first, spool.last)
                    if not self.store.exists(name):  # else: written before a crash
                        rows = self._write_parquet(name, spool)
                        EXPORT_ROWS.inc(rows)
                        EXPORT_FILES.inc()
                    written.append(name)
                spool.path.unlink(missing_ok=True)
                del self.spools[(spool.partition, spool.start_s)]
            self.files_written += written
            return written

    def _write_parquet(self, name: str, spool: Spool) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = 0

        def fill(out: Any) -> None:
            nonlocal rows
            with pq.ParquetWriter(out, self.schema, compression="zstd") as writer:
                for chunk in spool.records():
                    writer.write_table(pa.Table.from_pylist(chunk, schema=self.schema))
                    rows += len(chunk)

        self.store.write(name, fill)
        return rows

    def timers(self) -> list[tuple[float, Callable[[], object]]]:
        return [(max(1.0, min(30.0, self.period_s / 4)), self.roll)]

    def close(self) -> None:
        with self.lock:
            for spool in self.spools.values():
                spool.sync()
                spool.close()


__all__ = ["ExportSink", "Spool", "arrow_schema_of", "file_name", "period_start"]
