"""Streamed export of telemetry rows: a server-side cursor read in chunks, each chunk written out
as CSV lines or one Parquet row group, so no whole file is ever in memory."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

CHUNK_ROWS = 5000
COLUMNS = ("time", "battery_id", "soc", "soh", "voltage", "current", "temperature",
           "charge_cycles", "power_consumption", "rul_prediction", "rul_p10", "rul_p90",
           "failure_probability", "anomaly_score", "model_version", "event_id", "scored_at",
           "fault_score", "fault_flag")
_QUERY = ("SELECT " + ", ".join(COLUMNS) + " FROM ev_telemetry WHERE time >= %s AND time < %s "
          "{battery} ORDER BY time, battery_id")


class _Drain:
    """A write-only file that hands out what was written since the last :meth:`take`."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.chunks.append(b)
        self.position += len(b)
        return len(b)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


def _arrow_schema() -> Any:
    import pyarrow as pa

    f8, ts = pa.float64(), pa.timestamp("ms", tz="UTC")
    types = {"time": ts, "scored_at": ts, "battery_id": pa.string(), "model_version": pa.string(),
             "event_id": pa.string(), "charge_cycles": pa.int32(), "fault_flag": pa.bool_()}
    return pa.schema([(c, types.get(c, f8)) for c in COLUMNS])


async def stream(pool: Any, battery: str | None, start: datetime, end: datetime,
                 fmt: str) -> AsyncIterator[bytes]:
    """Yield the export file of the rows between ``start`` and ``end`` (of one battery or all)."""
    params: list[Any] = [start, end]
    query = _QUERY.format(battery="AND battery_id = %s" if battery else "")
    if battery:
        params.append(battery)
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor(name="evtwin_export")
        await cur.execute(query, params)
        if fmt == "csv":
            async for chunk in _csv(cur):
                yield chunk
        else:
            async for chunk in _parquet(cur):
                yield chunk


def _cell(value: Any) -> Any:
    """A CSV cell: times as ISO 8601, booleans as ``true``/``false`` (as ``evtwin export`` writes
    them), the rest as they are."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


async def _csv(cur: Any) -> AsyncIterator[bytes]:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    while True:
        rows = await cur.fetchmany(CHUNK_ROWS)
        for row in rows:
            writer.writerow(_cell(v) for v in row)
        yield text.getvalue().encode()
        text.seek(0)
        text.truncate(0)
        if len(rows) < CHUNK_ROWS:
            return


async def _parquet(cur: Any) -> AsyncIterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema()
    drain = _Drain()
    writer = pq.ParquetWriter(pa.PythonFile(drain, mode="w"), schema)
    while True:
        rows = await cur.fetchmany(CHUNK_ROWS)
        if rows:
            columns = list(zip(*rows, strict=True))
            writer.write_table(pa.table(
                [pa.array(col, type=schema.field(i).type) for i, col in enumerate(columns)],
                schema=schema))
            yield drain.take()
        if len(rows) < CHUNK_ROWS:
            break
    writer.close()
    yield drain.take()


__all__ = ["CHUNK_ROWS", "COLUMNS", "stream"]
