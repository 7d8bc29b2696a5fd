"""Prometheus metrics of a pipeline process (one endpoint per replica).

Names follow the seed for the per-battery gauges (``battery_rul_prediction``, …) and
``evtwin_*`` for the pipeline's own health. The per-battery gauges are one dict of each battery's
latest values, turned into gauge families when Prometheus scrapes (:class:`BatteryGauges`): at
10,000 packs every event of a batch is another battery, and setting five ``prometheus_client``
gauge children per event (a lock each) took 9.4 µs of the score worker's ~72 µs per event in
``evtwin bench e2e``; the dict update costs 0.5 µs per event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from streams.runtime.records import Column, ScoredBatch


class BatteryGauges:
    """The per-battery gauges (label ``battery_id``) as a custom collector: the latest values of
    each battery this replica owns, kept in a dict and exported at scrape time."""

    GAUGES: tuple[tuple[str, str, Column], ...] = (
        ("battery_rul_prediction", "Predicted remaining useful life (P50), equivalent full cycles", "rul_p50"),
        ("battery_failure_probability", "Predicted failure probability within the horizon (0-1)",
         "failure_probability"),
        ("battery_soc", "State of charge, percent", "soc"),
        ("battery_soh", "State of health (BMS estimate), percent", "soh"),
        ("battery_temperature", "Highest pack temperature, degrees Celsius", "temperature"),
    )

    def __init__(self) -> None:
        self.latest: dict[str, tuple[float, ...]] = {}

    def observe(self, batch: ScoredBatch) -> None:
        columns = [batch.column(key).tolist() for _, _, key in self.GAUGES]
        self.latest.update(zip(batch.battery_ids, zip(*columns, strict=True), strict=True))  # last one wins

    def forget(self, battery_ids: Sequence[str]) -> None:
        for battery in battery_ids:
            self.latest.pop(battery, None)

    def _families(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, doc, labels=["battery_id"]) for name, doc, _ in self.GAUGES]

    def describe(self) -> list[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> list[GaugeMetricFamily]:
        families = self._families()
        for battery, values in dict(self.latest).items():  # a copy: the scoring thread updates it
            for family, value in zip(families, values, strict=True):
                family.add_metric([battery], value)
        return families


BATTERIES = BatteryGauges()
REGISTRY.register(BATTERIES)
PREDICTIONS = Counter("predictions_total", "Predictions emitted")

EVENTS_IN = Counter("evtwin_events_in", "Records consumed", ["topic"])
EVENTS_OUT = Counter("evtwin_events_out", "Records produced", ["topic"])
DEAD_LETTERS = Counter("evtwin_dead_letters", "Records sent to the dead-letter topic", ["error_type"])
ALERTS = Counter("evtwin_alerts", "Alert records emitted", ["rule", "status"])
BATCH_FAILURES = Counter("evtwin_batch_failures", "Batches that failed (broker or registry trouble) and were retried")
BACKPRESSURE = Counter("evtwin_sink_backpressure", "Batches a sink asked to offer again later (SinkBackpressureError)")
BATCH_SIZE = Histogram("evtwin_batch_size", "Events per micro-batch",
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000))
SCORING_SECONDS = Histogram("evtwin_scoring_seconds", "Time to decode, validate, score and encode one micro-batch, s",
                            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
EVENT_LATENCY = Histogram("evtwin_event_latency_seconds", "Event time to prediction emit, s",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
STAGE_SECONDS = Counter(
    "evtwin_stage_seconds", "CPU seconds of the scoring thread per stage of the score worker: decode, "
    "validate, features, score, encode, produce (incl. the flush), alerts, metrics. The rest of "
    "process_cpu_seconds is Faust, the Kafka clients' threads and the metrics endpoint", ["stage"])
CONSUMER_LAG = Gauge("evtwin_consumer_lag", "Records not yet consumed (end offset - position)", ["topic", "partition"])
MODEL_INFO = Gauge("evtwin_model_info", "The model in use (value 1)", ["model_version"])


class StageClock:
    """CPU time of the calling thread per stage (``time.thread_time``): :meth:`lap` adds the time
    since the previous lap (or :meth:`start`) to a stage. Two clock reads per stage and batch, so
    the cost does not grow with the batch."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.thread_time()

    def start(self) -> None:
        self._last = time.thread_time()

    def lap(self, stage: str) -> None:
        now = time.thread_time()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now

    def export(self) -> None:
        """Add the seconds per stage to ``evtwin_stage_seconds_total`` and start again from zero."""
        for stage, seconds in self.seconds.items():
            STAGE_SECONDS.labels(stage).inc(seconds)
        self.seconds = {}


def serve_metrics(port: int) -> None:
    """Expose ``/metrics``, ``/healthz`` and ``/readyz`` (:mod:`streams.runtime.health`) on
    all interfaces, ``port`` (0 = do not serve)."""
    if port:
        from streams.runtime.health import serve

        serve(port)


def observe_batteries(batch: ScoredBatch) -> None:
    """Set the per-battery gauges from one batch: the last value of each battery wins."""
    BATTERIES.observe(batch)


def forget_batteries(battery_ids: Sequence[str]) -> None:
    """Stop exporting the per-battery gauges of batteries this replica no longer owns (their
    partition moved to another replica in a rebalance, which exports them from now on)."""
    BATTERIES.forget(battery_ids)


__all__ = [
    "ALERTS", "BACKPRESSURE", "BATTERIES", "BatteryGauges", "BATCH_FAILURES", "BATCH_SIZE", "CONSUMER_LAG", "DEAD_LETTERS", "EVENTS_IN", "EVENTS_OUT",
    "EVENT_LATENCY", "MODEL_INFO", "PREDICTIONS", "SCORING_SECONDS", "STAGE_SECONDS", "StageClock",
    "forget_batteries",
    "observe_batteries",
    "serve_metrics",
]
