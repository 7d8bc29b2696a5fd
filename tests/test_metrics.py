"""Per-battery gauges: set from a batch (last value wins), dropped when the battery moves away."""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest

from streams.runtime.metrics import forget_batteries, observe_batteries


def test_gauges_follow_the_batteries_a_replica_owns() -> None:
    columns = {k: np.asarray(v, float) for k, v in {
        "rul_p50": [500, 480], "failure_probability": [0.1, 0.2], "soc": [50, 49],
        "soh": [91, 91], "temperature": [30, 31]}.items()}
    observe_batteries(["MET_A", "MET_A"], columns)
    text = generate_latest().decode()
    assert 'battery_rul_prediction{battery_id="MET_A"} 480.0' in text  # the batch's last value
    assert 'battery_temperature{battery_id="MET_A"} 31.0' in text
    forget_batteries(["MET_A"])
    assert 'battery_id="MET_A"' not in generate_latest().decode()


def test_a_failing_batch_is_retried_until_it_succeeds_and_counted() -> None:
    """Broker or registry trouble: the batch waits and retries (never acknowledged half-done);
    the failures show on the endpoint."""
    import asyncio

    from streams.scoring.worker import _handle_until_done

    class Flaky:
        calls = 0

        def handle(self, chunk: list) -> None:
            Flaky.calls += 1
            if Flaky.calls < 3:
                raise OSError("registry unreachable")

    def failures() -> float:
        line = next(ln for ln in generate_latest().decode().splitlines()
                    if ln.startswith("evtwin_batch_failures_total "))
        return float(line.split()[-1])

    before = failures()
    asyncio.run(_handle_until_done(Flaky(), [object()]))  # type: ignore[arg-type]
    assert Flaky.calls == 3
    assert failures() == before + 2
