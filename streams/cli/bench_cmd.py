"""``evtwin bench``: the one home of our benchmarks. Each prints a table, or with ``--json`` one
JSON object. Numbers, never assertions: the README's performance section quotes them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.settings import Settings


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("bench", help="benchmarks that print numbers",
                       description="Benchmarks that print numbers (a table, or JSON with --json).")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    b = bsub.add_parser("physics", help="the vectorised fleet physics step",
                        description="Time Fleet.step over many packs: battery-steps per second.")
    opt.env(b, "--batteries", "EVTWIN_BENCH_BATTERIES", "packs in the fleet", default=10000, type=int)
    opt.env(b, "--steps", "EVTWIN_BENCH_STEPS", "steps to time", default=200, type=int)
    opt.env(b, "--dt", "EVTWIN_BENCH_DT", "step length, seconds", default=1.0, type=float)
    opt.flag(b, "--json", "EVTWIN_BENCH_JSON", "print one JSON object instead of a table")
    b.set_defaults(handler=run_physics)

    b = bsub.add_parser("pipeline", help="decode → score → produce, vs a naive loop and a relay",
                        description="Run the score workers on the embedded stack over a fixed "
                        "event count and fleet: events/s (1 and 2 replicas), CPU µs per event, "
                        "p50/p99 event-to-prediction latency at a fixed rate, and in the same run "
                        "a naive one-event-at-a-time baseline and a raw consume→produce relay.")
    opt.env(b, "--events", "EVTWIN_BENCH_EVENTS", "events to score", default=100_000, type=int)
    opt.env(b, "--fleet", "EVTWIN_BENCH_FLEET", "packs the events come from", default=1000, type=int)
    opt.env(b, "--naive-events", "EVTWIN_BENCH_NAIVE_EVENTS",
            "events for the naive baseline (it is slow)", default=5000, type=int)
    opt.env(b, "--latency-rate", "EVTWIN_BENCH_LATENCY_RATE", "events/s of the latency run",
            default=5000, type=int)
    opt.env(b, "--latency-seconds", "EVTWIN_BENCH_LATENCY_SECONDS", "length of the latency run, s",
            default=10.0, type=float)
    opt.setting(b, "--model-dir", "model_dir", "directory of the trained models")
    opt.setting(b, "--partitions", "topic_partitions", "partitions of the bench topics", type=int)
    opt.flag(b, "--json", "EVTWIN_BENCH_JSON", "print one JSON object instead of a table")
    b.set_defaults(handler=run_pipeline)

    b = bsub.add_parser("sink", help="rows/s the database sink writes",
                        description="Write prediction rows in batches into the database (a "
                        "running stack's, or EVTWIN_DATABASE_URL) with both strategies — COPY into "
                        "a staging table + INSERT … ON CONFLICT, and executemany — in a scratch "
                        "schema that is dropped afterwards.")
    opt.env(b, "--rows", "EVTWIN_BENCH_ROWS", "rows to write", default=200_000, type=int)
    opt.env(b, "--batch", "EVTWIN_BENCH_BATCH", "rows per batch (one transaction)", default=5000, type=int)
    opt.flag(b, "--json", "EVTWIN_BENCH_JSON", "print one JSON object instead of a table")
    b.set_defaults(handler=run_sink)

    b = bsub.add_parser("broker", help="what the pipeline needs of each embedded broker",
                        description="Start each embedded broker alone and measure end-offset "
                        "correctness (consumer lag needs it) and a consumer-group read.")
    opt.env(b, "--records", "EVTWIN_BENCH_RECORDS", "records to produce", default=10000, type=int)
    opt.flag(b, "--json", "EVTWIN_BENCH_JSON", "print one JSON object instead of a table")
    b.set_defaults(handler=run_broker)
    _register_api(bsub, opt)
    _register_e2e(bsub, opt)


def _register_e2e(bsub: Any, opt: Any) -> None:
    b = bsub.add_parser("e2e", help="simulator → workers → database and MQTT, end to end",
                        description="On a fresh embedded stack: the simulator at a fixed fleet size "
                        "and rate for a fixed time, score workers, the database sink and the MQTT "
                        "bridge. Reports events/s committed to the database, rows lost and "
                        "duplicated, p50/p99 telemetry→row and telemetry→MQTT latency, CPU and "
                        "peak memory per process.")
    opt.env(b, "--fleet", "EVTWIN_BENCH_E2E_FLEET", "packs in the fleet", default=10_000, type=int)
    opt.env(b, "--rate-hz", "EVTWIN_BENCH_E2E_RATE_HZ", "readings per pack per second",
            default=1.0, type=float)
    opt.env(b, "--seconds", "EVTWIN_BENCH_E2E_SECONDS", "seconds measured", default=300.0, type=float)
    opt.env(b, "--warmup", "EVTWIN_BENCH_E2E_WARMUP", "seconds before the measurement (group "
            "joins, model loads)", default=30.0, type=float)
    opt.env(b, "--workers", "EVTWIN_BENCH_E2E_WORKERS", "score-worker replicas", default=2, type=int)
    opt.env(b, "--scaling", "EVTWIN_BENCH_E2E_SCALING", "run once per replica count of this list "
            "(e.g. 1,2,4; overrides --workers) and report each run and its events/s against the "
            "first", default="")
    opt.flag(b, "--ground-truth", "EVTWIN_BENCH_E2E_GROUND_TRUTH", "the simulator also publishes the "
             "true state to ev.groundtruth.v1, as in evtwin up (a fleet in service has no ground "
             "truth, and no consumer of it runs here: off by default)")
    opt.setting(b, "--slices", "sim_slices", "parts each second's readings are sent in, spread over "
                "the second (1 = the whole fleet at one instant, a burst)", type=int)
    opt.setting(b, "--model-dir", "model_dir", "directory of the trained models")
    opt.setting(b, "--partitions", "topic_partitions", "partitions of the topics", type=int)
    opt.flag(b, "--json", "EVTWIN_BENCH_JSON", "print one JSON object instead of a table")
    b.set_defaults(handler=run_e2e)


def _replica_counts(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; a clear error for anything else."""
    from streams.cli import CliError

    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise CliError(f"--scaling wants replica counts separated by commas, such as 1,2,4; got {text!r}")
    return counts


def run_e2e(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from models.errors import ModelError
    from models.scorer import Scorer
    from streams.cli import CliError
    from streams.errors import BenchError
    from streams.tools.bench_e2e import run_e2e_bench

    for name, value in (("--fleet", args.fleet), ("--workers", args.workers)):
        if value < 1:
            raise CliError(f"{name} must be at least 1, got {value}")
    if args.rate_hz <= 0 or args.seconds <= 0 or args.warmup < 0:
        raise CliError("--rate-hz and --seconds must be > 0 and --warmup >= 0")
    try:
        Scorer.load(settings.model_dir)
    except ModelError as exc:
        raise CliError(str(exc)) from None
    counts = _replica_counts(args.scaling) if args.scaling else [args.workers]
    runs = []
    for workers in counts:
        try:
            runs.append(run_e2e_bench(settings.model_dir, args.fleet, args.rate_hz, args.seconds,
                                      workers, settings.topic_partitions, args.warmup,
                                      ground_truth=args.ground_truth, slices=settings.sim_slices,
                                      progress=lambda text: print(text, file=sys.stderr)))
        except BenchError as exc:
            raise CliError(f"bench e2e ({workers} worker(s)): {exc}") from None
    if not args.scaling:
        print_result("End to end (embedded stack, this machine)", runs[0], args.json)
        return 0
    first = runs[0]["events_per_s"]
    scaling = [{"workers": w, "events_per_s": r["events_per_s"], "ratio": r["events_per_s"] / first,
                "row_p99_ms": r["row_p99_ms"], "rows_lost": r["rows_lost"],
                "rows_duplicated": r["rows_duplicated"]} for w, r in zip(counts, runs, strict=True)]
    if args.json:
        print(json.dumps({"runs": runs, "scaling": scaling}))
        return 0
    for w, run in zip(counts, runs, strict=True):
        print_result(f"End to end, {w} worker(s) (embedded stack, this machine)", run, False)
    table = Table(title="Scaling (events/s into the table, against the first run)", title_justify="left")
    for column in ("workers", "events/s", "ratio", "row p99 ms", "lost", "duplicated"):
        table.add_column(column, justify="right")
    for row in scaling:
        table.add_row(str(row["workers"]), f"{row['events_per_s']:,.0f}", f"{row['ratio']:.2f}",
                      f"{row['row_p99_ms']:,.0f}", str(row["rows_lost"]), str(row["rows_duplicated"]))
    Console().print(table)
    return 0


def _register_api(bsub: Any, opt: Any) -> None:
    b = bsub.add_parser("api", help="API latency, WebSocket fan-out and API memory",
                        description="On a fresh embedded stack: load packs and telemetry rows, run "
                        "`evtwin api`, time GET /api/batteries/{id} and /api/fleet/summary under "
                        "concurrent clients (p50/p95/p99), WebSocket fan-out delivery (p50/p99 from "
                        "production to arrival) to many /ws/fleet clients, and the API's RSS.")
    opt.env(b, "--packs", "EVTWIN_BENCH_PACKS", "packs in the database", default=1000, type=int)
    opt.env(b, "--rows", "EVTWIN_BENCH_API_ROWS", "telemetry rows in the database (the bar is "
            "10,000,000; loading takes minutes)", default=1_000_000, type=int)
    opt.env(b, "--clients", "EVTWIN_BENCH_CLIENTS", "concurrent HTTP clients", default=50, type=int)
    opt.env(b, "--seconds", "EVTWIN_BENCH_SECONDS", "seconds per HTTP endpoint", default=10.0, type=float)
    opt.env(b, "--ws-clients", "EVTWIN_BENCH_WS_CLIENTS", "WebSocket clients", default=200, type=int)
    opt.env(b, "--ws-rate", "EVTWIN_BENCH_WS_RATE", "predictions/s produced during the fan-out",
            default=5000, type=int)
    opt.env(b, "--ws-seconds", "EVTWIN_BENCH_WS_SECONDS", "seconds of the fan-out", default=10.0,
            type=float)
    opt.flag(b, "--json", "EVTWIN_BENCH_JSON", "print one JSON object instead of a table")
    b.set_defaults(handler=run_api)


def run_api(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from streams.cli import CliError
    from streams.tools.bench_api import BenchError, run_api_bench

    try:
        result = run_api_bench(args.packs, args.rows, args.clients, args.seconds, args.ws_clients,
                               args.ws_rate, args.ws_seconds,
                               progress=lambda text: print(text, file=sys.stderr, flush=True))
    except BenchError as exc:
        raise CliError(f"bench api: {exc}") from None
    print_result("API (embedded stack, this machine)", result, args.json)
    return 0


def print_result(title: str, result: dict[str, Any], as_json: bool) -> None:
    """Print ``result`` as one JSON object or as a two-column table."""
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=title, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:,.0f}" if isinstance(value, float) and value > 100 else
                      (f"{value:.4g}" if isinstance(value, float) else str(value)))
    Console().print(table)


def run_physics(args: argparse.Namespace, settings: Settings) -> int:
    from models.physics.bench import run_bench

    result = run_bench(n_batteries=args.batteries, steps=args.steps, dt_s=args.dt)
    print_result("Physics step (one core)", result, args.json)
    return 0


def run_broker(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.embedded.broker_probe import probe_broker

    results = {kind: probe_broker(Settings, kind, args.records) for kind in ("noida", "tansu")}
    if args.json:
        print(json.dumps(results))
        return 0
    table = Table(title="Embedded brokers", title_justify="left")
    for col in ("broker", "records", "high watermark", "end offsets", "produce/s", "group read"):
        table.add_column(col, justify="right")
    for r in results.values():
        table.add_row(r["broker"], str(r["records"]), str(r["high_watermark"]),
                      "correct" if r["end_offsets_correct"] else "WRONG",
                      f"{r['produce_per_s']:,.0f}", f"{r['group_consume_s']:.2f} s")
    Console().print(table)
    return 0


def run_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from models.errors import ModelError
    from models.scorer import Scorer
    from streams.cli import CliError
    from streams.tools.bench_pipeline import BenchError, run_pipeline_bench

    try:
        Scorer.load(settings.model_dir)
    except ModelError as exc:
        raise CliError(str(exc)) from None
    try:
        result = run_pipeline_bench(
            settings.model_dir, args.events, args.fleet, args.naive_events, args.latency_rate,
            args.latency_seconds, settings.topic_partitions,
            progress=lambda text: print(text, file=sys.stderr))
    except BenchError as exc:
        raise CliError(f"bench pipeline: {exc}") from None
    print_result("Pipeline (embedded stack, this machine)", result, args.json)
    return 0


def run_sink(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.endpoints import resolve_endpoints
    from connectors.sink_bench import run_sink_bench
    from streams.cli import CliError

    endpoints = resolve_endpoints(settings)
    if not endpoints.database_url:
        raise CliError("no database: start the stack (`evtwin services`) or set EVTWIN_DATABASE_URL")
    copy = run_sink_bench(endpoints.database_url, rows=args.rows, batch=args.batch, strategy="copy")
    many = run_sink_bench(endpoints.database_url, rows=args.rows, batch=args.batch,
                          strategy="executemany")
    result = {"rows": copy["rows"], "batch": args.batch, "rows_per_s": copy["rows_per_s"],
              "strategy": "copy", "executemany_rows_per_s": many["rows_per_s"],
              "flavour": copy.get("flavour", "")}
    print_result("Database sink", result, args.json)
    return 0
