"""``evtwin export``: a time range of a sink table to a CSV or Parquet file, locally or on S3."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from streams.errors import CliError
from streams.settings import Settings


class _BadTime(argparse.ArgumentTypeError, ValueError):
    """argparse shows its message; an environment default's ValueError path catches it too."""


def _when(text: str) -> datetime:
    """An ISO 8601 date or time; UTC unless it names its offset."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _BadTime(
            f"{text!r} is not an ISO 8601 date or time (2026-12-01 or 2026-12-01T06:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def register(sub: Any, opt: Any) -> None:
    from streams.tools.export import TABLES

    p = sub.add_parser(
        "export", help="export a time range of a sink table to CSV or Parquet (file:// or s3://)",
        description="Stream the rows of a sink table with time in [--from, --to) into one CSV or "
        "Parquet file under --to-uri (a folder: file:///dir, or s3://bucket/prefix; or a full "
        "file name ending in .csv/.parquet). Memory stays bounded whatever the row count; the "
        "file appears only once complete. S3 endpoint and credentials: EVTWIN_S3_*.")
    opt.env(p, "--from", "EVTWIN_EXPORT_FROM", "start, inclusive (ISO 8601; UTC unless an offset "
            "is given)", type=_when, dest="start")
    opt.env(p, "--to", "EVTWIN_EXPORT_TO", "end, exclusive (ISO 8601)", type=_when, dest="end")
    opt.env(p, "--battery", "EVTWIN_EXPORT_BATTERY", "only this battery")
    opt.env(p, "--table", "EVTWIN_EXPORT_TABLE", "what to export: telemetry (ev_telemetry, scored "
            "readings) or alerts (ev_alerts)", default="telemetry", choices=list(TABLES))
    opt.env(p, "--format", "EVTWIN_EXPORT_FORMAT", "file format", default="parquet",
            choices=["csv", "parquet"], dest="fmt")
    opt.env(p, "--to-uri", "EVTWIN_EXPORT_TO_URI", "destination folder or file: file:///… or "
            "s3://bucket/prefix", dest="to_uri")
    opt.setting(p, "--batch-rows", "export_batch_rows", "rows per streamed batch", type=int)
    opt.flag(p, "--quiet", "EVTWIN_EXPORT_QUIET", "no progress line")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.endpoints import resolve_endpoints
    from streams.tools.export import export

    for flag, value in (("--from", args.start), ("--to", args.end), ("--to-uri", args.to_uri)):
        if value is None:
            raise CliError(f"{flag} is required")
    database_url = resolve_endpoints(settings).database_url
    if not database_url:
        raise CliError("no database: set EVTWIN_DATABASE_URL or start the stack with `evtwin services`")
    step = [0]

    def progress(rows: int) -> None:
        if not args.quiet and rows >= step[0]:
            print(f"\r{rows:,} rows…", end="", file=sys.stderr, flush=True)
            step[0] = rows + 500_000

    result = export(settings, database_url, args.to_uri, table=args.table, start=args.start,
                    end=args.end, fmt=args.fmt, battery=args.battery, progress=progress)
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    print(f"\rexported {result.rows} rows to {result.uri} in {result.seconds:.1f} s "
          f"({rate:,.0f} rows/s)", file=sys.stderr)
    return 0


__all__ = ["register", "run_export"]
