"""The live fleet replayed in process through the twin and the models, scored against its truth:
``python -m streams.tools.replay_live [--model-dir DIR] [--batteries 500] [--ticks 600] [--json]``.

What ``evtwin up`` runs, without the broker and the clock: the simulator's fleet (seed and speed-up
of ``evtwin up``: one reading per pack per tick, a day of aging per tick at 24 h per second),
``models.state.update`` on every reading (the score worker's twin state), the model's features and
scores, and the simulator's ground truth of the same reading. It reports what the online accuracy
job would — RUL MAE and band coverage — and the failure probability's calibration on the live
fleet: ``training.evaluate``'s RUL and failure figures (``failure_mean_probability`` against the
label's rate ``failure_prevalence``, ``failure_brier`` against ``failure_baseline_brier``, ROC-AUC),
and the observed rate per probability bin. The first ``--warmup`` ticks
(twins that have just met their packs) are left out. Seconds on 500 packs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

BINS: tuple[float, ...] = (0.0, 0.05, 0.2, 0.5, 1.0)
"""Edges of the failure-probability bins of the calibration table."""


def run(model_dir: Path, batteries: int = 500, ticks: int = 600, warmup: int = 100, speedup: float = 24.0,
        seed: int = 42) -> dict[str, Any]:
    """Replay and score (see the module docstring); the figures as a dict."""
    from models import features as F
    from models.physics.fleet import Fleet
    from models.scorer import Scorer
    from streams.sources.simulator import telemetry_records
    from training.evaluate import failure_metrics, rul_metrics

    scorer = Scorer.load(model_dir)
    fleet = Fleet(batteries, seed, start_time_s=time.time())
    states: dict[Any, Any] = {}
    seq = np.zeros(batteries, dtype=np.int64)
    start_ms = int(time.time() * 1000)
    kept: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "y", "rul", "p10", "p90", "true_rul")}
    for tick in range(ticks):
        fleet.step(1.0, 3600.0 * speedup)
        readings, truth = fleet.readings(), fleet.ground_truth()
        pairs = telemetry_records(readings, fleet.battery_ids, seq, start_ms + tick * 1000)
        seq[readings["valid"]] += 1
        if not pairs:
            continue
        index = np.fromiter((i for i, _ in pairs), dtype=np.int64, count=len(pairs))
        records = [r for _, r in pairs]
        cols, mode = F.record_columns(records)
        after = F.replay([r["battery_id"] for r in records], cols, mode, F.record_timestamps(records), states)
        out = scorer.score(F.features_from_columns(cols, mode, after))
        if tick < warmup:
            continue
        kept["p"].append(out["failure_probability"])
        kept["y"].append(truth["failure_within_horizon"][index].astype(bool))
        kept["rul"].append(out["rul_p50"])
        kept["p10"].append(out["rul_p10"])
        kept["p90"].append(out["rul_p90"])
        kept["true_rul"].append(truth["true_rul_cycles"][index])
    v = {k: np.concatenate(parts) if parts else np.zeros(0) for k, parts in kept.items()}
    p, y = v["p"], v["y"]
    ok = np.isfinite(v["true_rul"])
    bins = []
    for lo, hi in zip(BINS[:-1], BINS[1:], strict=True):
        inside = (p >= lo) & ((p < hi) | (hi == BINS[-1]))
        if inside.any():
            bins.append({"from": lo, "to": hi, "readings": int(inside.sum()),
                         "mean_probability": float(p[inside].mean()), "observed_rate": float(y[inside].mean())})
    report: dict[str, Any] = {"model_version": scorer.version, "batteries": batteries, "ticks": ticks,
                              "warmup_ticks": warmup, "readings": int(len(p))}
    if ok.any():  # the figures of training and evaluate, on the live fleet
        q = np.column_stack([v["p10"][ok], v["rul"][ok], v["p90"][ok]])
        mean = float(scorer.card.get("rul_train_mean", np.mean(v["true_rul"][ok])))
        report.update(rul_metrics(v["true_rul"][ok], q, mean))
    if len(p):
        report.update(failure_metrics(y, p))
    report["failure_bins"] = bins
    return report


def main(argv: list[str] | None = None) -> None:
    from streams.settings import Settings

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="the model to score with (default: EVTWIN_MODEL_DIR, as evtwin)")
    parser.add_argument("--batteries", type=int, default=500)
    parser.add_argument("--ticks", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=100, help="first ticks left out of the figures")
    parser.add_argument("--speedup", type=float, default=24.0, help="hours of aging per tick")
    parser.add_argument("--seed", type=int, default=42, help="seed of the fleet (evtwin up's default)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < args.ticks:
        parser.error(f"--warmup must be at least 0 and below --ticks ({args.ticks}), got {args.warmup}")
    model_dir = args.model_dir or Settings().model_dir
    result = run(model_dir, args.batteries, args.ticks, args.warmup, args.speedup, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if key != "failure_bins":
            print(f"{key:26s} {value:.4g}" if isinstance(value, float) else f"{key:26s} {value}")
    for b in result["failure_bins"]:
        print(f"  p in [{b['from']:.2f}, {b['to']:.2f}]: {b['readings']:>7} readings, "
              f"mean probability {b['mean_probability']:.3f}, observed {b['observed_rate']:.3f}")


if __name__ == "__main__":
    main()
