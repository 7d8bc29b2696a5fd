"""``evtwin export``: rows of a sink table in a time range to one CSV or Parquet file, on a local
folder or S3, in bounded memory.

The rows stream out of PostgreSQL with ``COPY (SELECT …) TO STDOUT`` (the server sends them as it
reads them; nothing is materialised on either side), pyarrow parses that stream in blocks of
``EVTWIN_EXPORT_BATCH_ROWS``-sized record batches, and each batch is written to the open file and
dropped: memory holds a few batches whatever the row count. Timestamps travel as epoch
microseconds and become UTC timestamps in the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.objectstore import ObjectStore, S3Options
from streams.errors import CliError
from streams.settings import Settings

# Column name -> Arrow type name, in table order; "ts" columns are timestamps (UTC, µs).
TABLES: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "telemetry": ("ev_telemetry", "time", [
        ("time", "ts"), ("battery_id", "string"), ("soc", "float64"), ("soh", "float64"),
        ("voltage", "float64"), ("current", "float64"), ("temperature", "float64"),
        ("charge_cycles", "int32"), ("power_consumption", "float64"),
        ("rul_prediction", "float64"), ("failure_probability", "float64"),
        ("rul_p10", "float64"), ("rul_p90", "float64"), ("anomaly_score", "float64"),
        ("model_version", "string"), ("event_id", "string"), ("scored_at", "ts"),
        ("fault_score", "float64"), ("fault_flag", "bool"),
    ]),
    "alerts": ("ev_alerts", "opened_at", [
        ("alert_id", "string"), ("battery_id", "string"), ("rule", "string"),
        ("severity", "string"), ("status", "string"), ("value", "float64"),
        ("threshold", "float64"), ("message", "string"), ("event_id", "string"),
        ("opened_at", "ts"), ("resolved_at", "ts"), ("updated_at", "ts"),
    ]),
}
"""Exportable tables: name -> (SQL table, time column, columns)."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: ``rows`` rows to ``uri`` in ``seconds``."""

    uri: str
    rows: int
    seconds: float


def s3_options(settings: Settings) -> S3Options:
    """The S3 endpoint and credentials of the settings."""
    return S3Options(
        settings.s3_endpoint_url,
        settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None,
        settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None,
        settings.s3_region)


def arrow_schema(columns: list[tuple[str, str]]) -> Any:
    import pyarrow as pa

    return pa.schema([(n, pa.timestamp("us", tz="UTC") if t == "ts" else pa.type_for_alias(t))
                      for n, t in columns])


def _select(table: str, time_col: str, columns: list[tuple[str, str]], battery: str | None) -> str:
    cols = ", ".join(f"(extract(epoch FROM {n}) * 1000000)::bigint" if t == "ts" else n
                     for n, t in columns)
    where = f"{time_col} >= %(start)s AND {time_col} < %(end)s"
    if battery:
        where += " AND battery_id = %(battery)s"
    return f"COPY (SELECT {cols} FROM {table} WHERE {where} ORDER BY {time_col}) TO STDOUT (FORMAT csv)"


class _CopyStream:
    """A read-only file over ``COPY … TO STDOUT`` (pyarrow's CSV reader pulls from it)."""

    def __init__(self, copy: Any) -> None:
        self.copy, self.buf, self.done, self.closed = copy, bytearray(), False, False

    def read(self, n: int = -1) -> bytes:
        while not self.done and (n < 0 or len(self.buf) < n):
            chunk = self.copy.read()
            if not chunk:
                self.done = True
            else:
                self.buf += chunk
        n = len(self.buf) if n < 0 else min(n, len(self.buf))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def batches(database_url: str, table: str, start: datetime, end: datetime,
            battery: str | None = None, batch_rows: int = 50_000) -> Any:
    """Yield the rows of ``table`` with time in ``[start, end)`` as Arrow record batches, oldest
    first, streamed (bounded memory)."""
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sql_table, time_col, columns = TABLES[table]
    schema = arrow_schema(columns)
    parse_types = {n: (pa.int64() if t == "ts" else schema.field(n).type) for n, t in columns}
    params = {"start": start, "end": end, "battery": battery}
    with psycopg.connect(database_url) as conn, conn.cursor() as cur, \
            cur.copy(_select(sql_table, time_col, columns, battery), params) as copy:
        reader = pacsv.open_csv(
            _CopyStream(copy),
            read_options=pacsv.ReadOptions(column_names=[n for n, _ in columns],
                                           block_size=max(1 << 20, batch_rows * 200)),
            convert_options=pacsv.ConvertOptions(column_types=parse_types, strings_can_be_null=True,
                                                 quoted_strings_can_be_null=False,
                                                 true_values=["t"], false_values=["f"]))
        for batch in reader:
            arrays = [batch.column(i).cast(schema.field(i).type) if t == "ts" else batch.column(i)
                      for i, (_, t) in enumerate(columns)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def file_name(table: str, start: datetime, end: datetime, battery: str | None, fmt: str) -> str:
    """``<table>_<from>_<to>[_<battery>].<fmt>``, times as compact UTC ISO 8601."""
    def stamp(t: datetime) -> str:
        return t.strftime("%Y%m%dT%H%M%SZ")

    return f"{table}_{stamp(start)}_{stamp(end)}" + (f"_{battery}" if battery else "") + f".{fmt}"


def export(settings: Settings, database_url: str, to_uri: str, *, table: str, start: datetime,
           end: datetime, fmt: str, battery: str | None = None,
           progress: Callable[[int], None] | None = None) -> ExportResult:
    """Write the rows to one file: ``to_uri`` itself when it ends in ``.csv``/``.parquet``, else
    :func:`file_name` under it.

    Raises:
        CliError: for an unknown table or format, or an empty range.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if table not in TABLES:
        raise CliError(f"unknown table {table!r}; exportable: {', '.join(TABLES)}")
    if fmt not in ("csv", "parquet"):
        raise CliError(f"unknown format {fmt!r}: csv or parquet")
    if end <= start:
        raise CliError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    root, name = to_uri.rstrip("/"), file_name(table, start, end, battery, fmt)
    if root.rsplit("/", 1)[-1].endswith((".csv", ".parquet")):
        root, name = root.rsplit("/", 1)
    store = ObjectStore(root, s3_options(settings))
    store.prepare()
    schema = arrow_schema(TABLES[table][2])
    rows, t0 = 0, time.perf_counter()

    def fill(out: Any) -> None:
        nonlocal rows
        writer: Any = (pq.ParquetWriter(out, schema, compression="zstd") if fmt == "parquet"
                       else pacsv.CSVWriter(out, schema))
        try:
            for batch in batches(database_url, table, start, end, battery, settings.export_batch_rows):
                writer.write_batch(batch)
                rows += batch.num_rows
                if progress is not None:
                    progress(rows)
        finally:
            writer.close()

    store.write(name, fill)
    return ExportResult(f"{root}/{name}", rows, time.perf_counter() - t0)


__all__ = ["TABLES", "ExportResult", "arrow_schema", "batches", "export", "file_name", "s3_options"]
