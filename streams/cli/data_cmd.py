"""``evtwin dataset generate``: run-to-failure histories with ground-truth labels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from streams.cli import CliError
from streams.settings import REPO_ROOT, Settings

DEFAULT_DATASET_DIR = REPO_ROOT / "datasets" / "generated"
"""Where ``evtwin dataset generate`` writes, and where ``evtwin train`` looks, by default."""


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("dataset", help="generate or inspect training data",
                       description="Generate or inspect training data.")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    g = dsub.add_parser("generate", help="simulate packs from new to end of life and write them",
                        description="Simulate packs from new to end of life (SoH 80 %) and write "
                        "their histories with ground-truth labels (see datasets/README.md).")
    opt.env(g, "--batteries", "EVTWIN_DATASET_BATTERIES", "packs to simulate", default=500, type=int)
    opt.env(g, "--seed", "EVTWIN_DATASET_SEED", "random seed (same seed, same data)", default=7, type=int)
    opt.env(g, "--out", "EVTWIN_DATASET_DIR", "output directory",
            default=str(DEFAULT_DATASET_DIR), type=str)
    opt.flag(g, "--csv", "EVTWIN_DATASET_CSV", "also write CSV beside the Parquet file")
    opt.flag(g, "--quiet", "EVTWIN_DATASET_QUIET", "no progress bar")
    g.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace, settings: Settings) -> int:
    from datasets.generate import generate_dataset

    if args.batteries < 1:
        raise CliError("--batteries must be at least 1")
    out = Path(args.out)
    formats = ("parquet", "csv") if args.csv else ("parquet",)
    try:
        path = generate_dataset(args.batteries, args.seed, out, formats=formats,
                                progress=not args.quiet)
    except OSError as exc:
        raise CliError(f"cannot write the dataset to {out}: {exc.strerror or exc}") from None
    manifest = out / "manifest.json"
    summary = json.loads(manifest.read_text()) if manifest.exists() else {}
    print(f"wrote {path} ({summary.get('rows', '?')} rows, {args.batteries} packs)", file=sys.stderr)
    return 0
