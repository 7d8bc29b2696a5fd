"""Per-battery gauges: set from a batch (last value wins), dropped when the battery moves away."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, generate_latest

from streams.runtime.metrics import forget_batteries, observe_batteries
from streams.runtime.records import ScoredBatch, Scores


def test_gauges_follow_the_batteries_a_replica_owns() -> None:
    records = [{"battery_id": "MET_A", "soc": 50.0, "soh": 91.0, "temperature": 30.0, "timestamp": 1},
               {"battery_id": "MET_A", "soc": 49.0, "soh": 91.0, "temperature": 31.0, "timestamp": 2}]
    scores = Scores.from_mapping({"rul_p50": [500, 480], "rul_p10": [400, 380], "rul_p90": [600, 580],
                                  "failure_probability": [0.1, 0.2], "anomaly_score": [0.0, 0.0]})
    observe_batteries(ScoredBatch.of(records, scores))
    text = generate_latest().decode()
    assert 'battery_rul_prediction{battery_id="MET_A"} 480.0' in text  # the batch's last value
    assert 'battery_temperature{battery_id="MET_A"} 31.0' in text
    forget_batteries(["MET_A"])
    assert 'battery_id="MET_A"' not in generate_latest().decode()


def test_a_failing_batch_is_retried_until_it_succeeds_and_counted() -> None:
    """Broker or registry trouble: the batch waits and retries (never acknowledged half-done);
    the failures show on the endpoint."""
    import asyncio

    from streams.runtime.agent import handle_until_done

    class Flaky:
        calls = 0

        @staticmethod
        def handle(chunk: list) -> None:
            Flaky.calls += 1
            if Flaky.calls < 3:
                raise OSError("registry unreachable")

    def failures() -> float:
        line = next(ln for ln in generate_latest().decode().splitlines()
                    if ln.startswith("evtwin_batch_failures_total "))
        return float(line.split()[-1])

    before = failures()
    asyncio.run(handle_until_done(Flaky.handle, [object()]))
    assert Flaky.calls == 3
    assert failures() == before + 2


def test_the_stage_clock_exports_the_cpu_of_each_stage_once() -> None:
    from streams.runtime.metrics import STAGE_SECONDS, StageClock

    def value(stage: str) -> float:
        return STAGE_SECONDS.labels(stage)._value.get()

    before = value("unit-busy"), value("unit-idle")
    clock = StageClock()
    clock.start()
    sum(i * i for i in range(300_000))  # CPU work
    clock.lap("unit-busy")
    time.sleep(0.05)  # wall time, no CPU of this thread
    clock.lap("unit-idle")
    clock.export()
    busy, idle = value("unit-busy") - before[0], value("unit-idle") - before[1]
    assert busy > 0.001 and idle < busy / 2, (busy, idle)
    clock.export()  # nothing new since the last export
    assert value("unit-busy") - before[0] == busy


def test_the_online_accuracy_job_exports_the_contract_names() -> None:
    """The evtwin_online_* names dashboards and rules may use (tests/support/prometheus.py) are the
    ones the accuracy job registers, and it registers no other."""
    import streams.sinks.accuracy  # noqa: F401 - registers the metrics
    from tests.support.prometheus import HISTOGRAMS, METRICS

    exported = set()
    for family in REGISTRY.collect():
        if family.name.startswith("evtwin_online_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            exported.add(name)
    contract = {m for m in METRICS if m.startswith("evtwin_online_")}
    assert exported == contract
    assert {m for m in contract if m in HISTOGRAMS} == {"evtwin_online_fault_detection_delay_seconds"}
