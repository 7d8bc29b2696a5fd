"""Throughput benchmark of :class:`models.physics.fleet.Fleet` (battery-steps per second).

Run with ``OPENBLAS_NUM_THREADS=1 python -m models.physics.bench`` (one core).
"""

from __future__ import annotations

import argparse
import time

from models.physics.fleet import Fleet


def run_bench(n_batteries: int = 10_000, steps: int = 200, dt_s: float = 1.0,
              aging_dt_s: float | None = None, seed: int = 0) -> dict[str, float]:
    """Time ``steps`` fleet steps (construction and one warm-up step excluded).

    Args:
        n_batteries: Fleet size.
        steps: Number of timed steps.
        dt_s: Step (s).
        aging_dt_s: Aging per step (s; default dt_s).
        seed: Fleet seed.

    Returns:
        ``n_batteries``, ``steps``, ``seconds`` (wall time of the steps) and ``battery_steps_per_s``.
    """
    fleet = Fleet(n_batteries, seed=seed)
    fleet.step(dt_s, aging_dt_s)
    start = time.perf_counter()
    for _ in range(steps):
        fleet.step(dt_s, aging_dt_s)
    seconds = time.perf_counter() - start
    return {"n_batteries": n_batteries, "steps": steps, "seconds": seconds,
            "battery_steps_per_s": n_batteries * steps / seconds}


def main() -> None:
    """Command line: print the benchmark result as a rich table."""
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000, help="batteries")
    ap.add_argument("--steps", type=int, default=200, help="timed steps")
    ap.add_argument("--dt", type=float, default=1.0, help="step (s)")
    args = ap.parse_args()
    res = run_bench(args.n, args.steps, args.dt)
    table = Table(title="Fleet step benchmark")
    for key in res:
        table.add_column(key)
    table.add_row(*(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in res.values()))
    Console().print(table)


if __name__ == "__main__":
    main()
