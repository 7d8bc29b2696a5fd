"""CPU cost of the twin's state stage per reading, in process (no broker):
``python -m streams.tools.bench_state [--packs 1000] [--ticks 20] [--batch 2000]``.

Simulator readings of ``packs`` packs (``ticks`` readings each, a day apart as at the demo's speed-up)
go through the worker's steps in batches: columns, ``TwinEstimator.update`` (``models.state.update``
per reading), the stateful features, the fault score and the changelog values (produce is a no-op
here). Prints µs of thread CPU time per reading for each step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def run(packs: int = 1000, ticks: int = 20, batch: int = 2000) -> dict[str, float]:
    """µs of CPU per reading of each step (see the module docstring)."""
    from models.features import features_from_columns, record_columns, record_timestamps
    from models.physics.fleet import Fleet
    from streams.sources.simulator import telemetry_records
    from streams.state.estimator import TwinEstimator

    fleet = Fleet(packs, seed=4, start_time_s=time.time())
    records = []
    for tick in range(ticks):
        fleet.step(1.0, 24.0)
        seq = np.full(packs, tick)
        records += [r for _, r in telemetry_records(fleet.readings(), fleet.battery_ids, seq, int(time.time() * 1000))]
    est = TwinEstimator("bench-twin-changelog")
    partitions = [hash(r["battery_id"]) % 12 for r in records]
    rng = np.random.default_rng(0)
    spent = dict.fromkeys(("columns", "state_update", "state_features", "fault_score", "changelog_values"), 0.0)
    for start in range(0, len(records), batch):
        chunk, parts = records[start:start + batch], partitions[start:start + batch]
        batteries = [r["battery_id"] for r in chunk]
        t0 = time.thread_time()
        cols, mode = record_columns(chunk)
        t1 = time.thread_time()
        states = est.update(batteries, parts, cols, mode, record_timestamps(chunk))
        t2 = time.thread_time()
        features_from_columns(cols, mode, states)
        t3 = time.thread_time()
        est.update_faults(batteries, parts, rng.random(len(chunk)), states)
        t4 = time.thread_time()
        est.flush_changes(lambda *args, **kwargs: None)
        t5 = time.thread_time()
        for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            spent[key] += dt
    return {key: value / len(records) * 1e6 for key, value in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packs", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    result = run(args.packs, args.ticks, args.batch)
    print(", ".join(f"{k} {v:.1f} µs" for k, v in result.items()), f"per reading; total {sum(result.values()):.1f} µs")


if __name__ == "__main__":
    main()
