"""``evtwin bench sink``: how many prediction rows per second the database sink writes.

Generates realistic prediction records (as the sink receives them from Kafka, decoded), then
times :meth:`TimescaleWriter.write_predictions` in batches — the ``ev_telemetry`` insert and the
``battery_state`` upsert, one transaction per batch — into a scratch schema that is dropped
afterwards, so the benchmark never touches the real tables.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from connectors.timescale import DEFAULT_STRATEGY, STRATEGIES, Strategy, TimescaleWriter

BENCH_START_MS = 1_760_000_000_000  # 2025-10-09T08:53:20Z


def make_predictions(count: int, batteries: int = 1000, start_ms: int = BENCH_START_MS,
                     step_ms: int = 1000, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` prediction records for ``batteries`` packs, one reading per pack per ``step_ms``.

    Values are plausible (SoC 20-95 %, SoH 70-100 %, ~360-400 V, …); fields and types follow
    ``schemas/prediction.avsc`` with timestamps as epoch milliseconds.
    """
    rng = random.Random(seed)
    ids = [f"BATTERY_{i:05d}" for i in range(batteries)]
    rows = []
    for n in range(count):
        i, tick = n % batteries, n // batteries
        ts = start_ms + tick * step_ms
        soh = 100.0 - 30.0 * ((i * 7919) % batteries) / batteries
        rul = max(0.0, (soh - 80.0) * 60.0)
        rows.append({
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "battery_id": ids[i], "timestamp": ts, "seq": tick,
            "soc": 20.0 + rng.random() * 75.0, "soh": soh,
            "voltage": 360.0 + rng.random() * 40.0, "current": rng.uniform(-150.0, 250.0),
            "temperature": 20.0 + rng.random() * 25.0, "charge_cycles": 100 + i % 1500,
            "power_consumption": rng.uniform(-60.0, 100.0),
            "rul_cycles": rul, "rul_p10": rul * 0.8, "rul_p90": rul * 1.2,
            "failure_probability": rng.random() * 0.2, "anomaly_score": rng.random() * 0.3,
            "fault_score": rng.random() * 0.6, "fault_flag": i % 10 == 0,
            "model_version": "ev-twin@1", "scored_at": ts + 40,
        })
    return rows


def run_sink_bench(database_url: str, rows: int = 200_000, batch: int = 5000,
                   strategy: Strategy = DEFAULT_STRATEGY, batteries: int = 1000,
                   progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write ``rows`` predictions in batches of ``batch`` with ``strategy`` and time it.

    Args:
        database_url: The database to measure (a scratch schema is created and dropped in it).
        rows: Prediction records to write.
        batch: Records per transaction.
        strategy: ``"copy"`` or ``"executemany"``.
        batteries: Distinct packs in the data (rows of ``battery_state``).
        progress: Called with the number of rows written after each batch.

    Returns:
        ``{"strategy", "rows", "batch", "seconds", "rows_per_s", "flavour"}``; ``rows`` counts the
        rows that landed in ``ev_telemetry`` (checked against the table).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    records = make_predictions(rows, batteries=batteries)
    schema = f"evtwin_bench_{uuid.uuid4().hex[:12]}"
    writer = TimescaleWriter(database_url, strategy=strategy, schema=schema,
                             application_name="evtwin-bench-sink", retry_for_s=30)
    try:
        writer.connect()
        elapsed, written = 0.0, 0
        for start in range(0, len(records), batch):
            chunk = records[start:start + batch]
            t0 = time.perf_counter()
            written += writer.write_predictions(chunk)
            elapsed += time.perf_counter() - t0
            if progress is not None:
                progress(min(start + batch, len(records)))
        flavour = writer.migration.flavour if writer.migration else "unknown"
    finally:
        writer.close()
        stored = _count_and_drop(database_url, schema)
    if stored != written:
        raise RuntimeError(f"sink bench: wrote {written} rows but {stored} are in the table")
    return {"strategy": strategy, "rows": stored, "batch": batch,
            "seconds": round(elapsed, 3), "rows_per_s": round(written / elapsed) if elapsed else 0,
            "flavour": flavour}


def _count_and_drop(database_url: str, schema: str) -> int:
    """Rows in the scratch schema's ``ev_telemetry`` (-1 if it was never created); drops it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        table = sql.Identifier(schema, "ev_telemetry")
        exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.ev_telemetry",)).fetchone()
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() \
            if exists and exists[0] else None
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    return int(row[0]) if row else -1


__all__ = ["make_predictions", "run_sink_bench"]
