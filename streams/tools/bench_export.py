"""Benchmark of ``evtwin export``: rows/s and peak RSS of one large export.

``python -m streams.tools.bench_export --rows 10000000 [--format parquet|csv]`` starts an embedded
PostgreSQL in a temporary folder (or uses ``EVTWIN_DATABASE_URL``), fills a fresh database's
``ev_telemetry`` with ``--rows`` synthetic scored readings (``generate_series``, server side), runs
``evtwin export`` over all of them as a subprocess to a temporary folder, and prints the rows
exported, the seconds, rows/s, the file size and the export process's peak RSS (its
``ru_maxrss``). The rows are written once per run; ``--keep DIR`` keeps the stack for reruns.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FILL = """
INSERT INTO ev_telemetry (time, battery_id, soc, soh, voltage, current, temperature, charge_cycles,
    power_consumption, rul_prediction, failure_probability, rul_p10, rul_p90, anomaly_score,
    model_version, event_id, scored_at)
SELECT t, 'BENCH-' || lpad((i %% 1000)::text, 4, '0'), 20 + (i %% 80), 80 + (i %% 20) * 0.9,
    350 + (i %% 50), (i %% 200) - 100, 20 + (i %% 40), i / 1000, (i %% 90) * 0.5,
    500 + (i %% 700), (i %% 100) / 100.0, 400 + (i %% 600), 600 + (i %% 800), (i %% 97) / 97.0,
    'ev-twin@7', md5(i::text), t + interval '35 milliseconds'
FROM (SELECT i, timestamptz '2026-11-01' + (i / 1000) * interval '1 second' AS t
      FROM generate_series(%s::bigint, %s::bigint) AS i) AS g
"""


def _fill(url: str, rows: int) -> float:
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM ev_telemetry").fetchone()[0]  # type: ignore[index]
        step = 1_000_000
        for lo in range(have, rows, step):
            conn.execute(FILL, (lo, min(rows, lo + step) - 1))  # type: ignore[arg-type]
            print(f"  filled {min(rows, lo + step):,} rows", file=sys.stderr, flush=True)
        conn.execute("ANALYZE ev_telemetry")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--format", default="parquet", choices=["csv", "parquet"])
    p.add_argument("--keep", type=Path, help="state directory of the stack, kept for reruns")
    args = p.parse_args(argv)

    from connectors.embedded.stack import EmbeddedStack
    from connectors.timescale import TimescaleWriter
    from streams.settings import Settings

    state = args.keep or Path(tempfile.mkdtemp(prefix="evtwin-bench-export-"))
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    url = os.environ.get("EVTWIN_DATABASE_URL")
    stack = None
    if not url:
        stack = EmbeddedStack(Settings(state_dir=state, embedded_postgres_port=0,
                                       kafka_bootstrap_servers="unused:9092", mqtt_url="mqtt://unused:1"))
        url = stack.start().database_url
    assert url is not None
    try:
        with TimescaleWriter(url, retry_for_s=10) as writer:
            writer.connect()  # migrations
        print(f"filling ev_telemetry to {args.rows:,} rows…", file=sys.stderr)
        fill_s = _fill(url, args.rows)
        out = Path(tempfile.mkdtemp(prefix="evtwin-export-out-", dir=state))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVTWIN_")}
        env.update(EVTWIN_DATABASE_URL=url, EVTWIN_STATE_DIR=str(state))
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "streams.cli", "export", "--from", "2026-01-01",
                        "--to", "2027-01-01", "--format", args.format, "--quiet",
                        "--to-uri", f"file://{out}"], env=env, check=True)
        seconds = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size = sum(f.stat().st_size for f in out.iterdir())
        print(f"fill: {fill_s:.0f} s; export {args.format}: {args.rows:,} rows in {seconds:.1f} s "
              f"= {args.rows / seconds:,.0f} rows/s (process start included); file "
              f"{size / 1e6:,.0f} MB; peak RSS of the export process {peak_mb:,.0f} MB"
              + (" (max of all children so far)" if before else ""))
        for f in out.iterdir():
            f.unlink()
        out.rmdir()
    finally:
        if stack is not None:
            stack.stop()  # its data stays in --keep DIR for the next run
        if not args.keep:
            shutil.rmtree(state, ignore_errors=True)  # ~2 GB of PostgreSQL data at 10 M rows
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
