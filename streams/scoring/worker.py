"""The score worker: a Faust app whose agent ``score_telemetry`` scores every telemetry event.

Each replica of the app joins one consumer group (``EVTWIN_APP_ID``); partitions rebalance across
replicas. The agent is thin: it takes micro-batches of raw records and hands them to
:class:`ScoreWorker`, which scores them (:mod:`streams.scoring.batch`), raises alerts
(:mod:`streams.state.alerts`), produces predictions, alerts and dead letters, and waits until they are on
the broker before Faust acknowledges the batch — at-least-once, nothing lost across a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from connectors import kafka
from connectors.endpoints import Endpoints
from streams.errors import StreamsError
from streams.runtime import metrics
from streams.runtime.codecs import codec_for
from streams.runtime.records import RawRecord, ScoredBatch
from streams.scoring.batch import ScoringContext, score_batch
from streams.scoring.model_source import ModelSource
from streams.settings import Settings
from streams.state.alerts import FAULT_RULE, AlertEngine, default_rules
from streams.state.estimator import TwinEstimator
from streams.topics import ALERTS, PREDICTIONS, TELEMETRY, TELEMETRY_DLQ, state_topic_specs

log = logging.getLogger(__name__)


class ScoreWorker:
    """Scores batches and produces what they yield; owns the alert state of its partitions."""

    def __init__(self, settings: Settings, endpoints: Endpoints, models: ModelSource) -> None:
        from models.features import features_from_records

        self.settings = settings
        self.endpoints = endpoints
        self.models = models
        changelogs = _ensure_changelogs(settings, endpoints.kafka_bootstrap_servers)
        self.twin = TwinEstimator(changelogs[1].name)
        self.ctx = ScoringContext(
            codec_for(TELEMETRY, endpoints), codec_for(PREDICTIONS, endpoints),
            codec_for(TELEMETRY_DLQ, endpoints), models.current(), features_from_records,
            int(settings.max_future_skew_s * 1000), int(settings.max_event_age_s * 1000),
            estimator=self.twin)
        self.alert_codec = codec_for(ALERTS, endpoints)
        self.alerts = AlertEngine(default_rules(settings), settings.alert_debounce,
                                  settings.alert_silence_s, changelog=changelogs[0].name)
        self._fault_thresholds(self.ctx.scorer)
        self.producer = kafka.checked_producer(endpoints.kafka_bootstrap_servers, **{"linger.ms": 2})
        self.partitions: set[int] = set()
        self.battery_partition: dict[bytes | None, int] = {}
        metrics.MODEL_INFO.labels(self.ctx.scorer.version).set(1)
        # Register the output schemas now (with a registry): an unreachable registry stops the
        # start with a clear error instead of failing the first dead letter hours later.
        for codec in (self.ctx.prediction_codec, self.ctx.dlq_codec, self.alert_codec):
            _ = codec.header

    def handle(self, batch: Sequence[RawRecord]) -> None:
        """Score ``batch`` and make every output durable on the broker before returning."""
        started = time.perf_counter()
        result = score_batch(self.ctx, batch)  # laps decode … encode on the clock
        clock = self.ctx.clock
        produce = self.producer.produce
        for rec, value in zip(result.records, result.encoded, strict=True):
            produce(PREDICTIONS, value, rec["battery_id"].encode())
        for dead in result.dead:
            produce(TELEMETRY_DLQ, dead.value, dead.key, headers=dead.headers)  # type: ignore[arg-type]
            metrics.DEAD_LETTERS.labels(dead.error_type).inc()
        clock.lap("produce")
        if result.records:
            self.twin.flush_changes(produce)  # the twin's state: durable with the outputs
            clock.lap("state")
            alerts = self.alerts.evaluate(result)
            alerts += self.alerts.watch_silence(result)
            for alert in alerts:
                produce(ALERTS, self.alert_codec.encode(alert), alert["battery_id"].encode())
                metrics.ALERTS.labels(alert["rule"], alert["status"]).inc()
            self.alerts.flush_changes(produce)  # durable with the outputs, before the ack
        clock.lap("alerts")
        self._flush()
        clock.lap("produce")
        self._observe(batch, result, started)
        clock.lap("metrics")
        clock.export()

    def _flush(self) -> None:
        """Wait until the batch's outputs are on the broker; raise (the batch is retried, not
        acknowledged) when some were refused or are not there after 30 s."""
        self.producer.flush_delivered(30)

    def _observe(self, batch: Sequence[RawRecord], result: ScoredBatch, started: float) -> None:
        n = len(result.records)
        metrics.EVENTS_IN.labels(TELEMETRY).inc(len(batch))
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.SCORING_SECONDS.observe(time.perf_counter() - started)
        if n:
            metrics.EVENTS_OUT.labels(PREDICTIONS).inc(n)
            metrics.PREDICTIONS.inc(n)
            latency = time.time() - result.timestamp / 1000.0
            for value in latency[:: max(1, n // 100)]:  # a sample per batch keeps the cost flat
                metrics.EVENT_LATENCY.observe(float(value))
            metrics.observe_batteries(result)

    def note_partitions(self, batch: Sequence[Any]) -> None:
        """Remember which partition each battery (= record key, bytes) lives on."""
        self.battery_partition.update((raw.key, raw.partition) for raw in batch)

    def sync_assignment(self, assigned: set[int]) -> None:
        """Drop the partition state of partitions lost; restore it for partitions gained."""
        lost, gained = self.partitions - assigned, assigned - self.partitions
        if lost:
            gone = [b.decode(errors="replace") for b, p in self.battery_partition.items()
                    if p in lost and b is not None]
            self.alerts.revoke(lost)
            self.twin.revoke(lost)
            metrics.forget_batteries(gone)
            for b in gone:
                self.battery_partition.pop(b.encode(), None)
        if gained:
            started = time.monotonic()
            bootstrap, group = self.endpoints.kafka_bootstrap_servers, f"{self.settings.app_id}-restore"
            restored = self.alerts.assign(gained, self.producer, lambda: kafka.consumer(bootstrap, group))
            twins = self.twin.assign(gained, self.producer, lambda: kafka.consumer(bootstrap, group))
            log.info("took over partitions %s: %d alert state(s) and %d battery state(s) restored in %.2f s, "
                     "%d open", sorted(gained), restored, twins, time.monotonic() - started,
                     self.alerts.open_count())
        self.partitions = set(assigned)

    def _fault_thresholds(self, scorer: Any) -> None:
        """The battery-level fault flag's thresholds of ``scorer``'s model card (set in training)."""
        card = getattr(scorer, "card", {}) or {}
        self.twin.fault_open = float(card.get("fault_score_open", self.twin.fault_open))
        self.twin.fault_clear = float(card.get("fault_score_clear", self.twin.fault_clear))
        self.alerts.retune(FAULT_RULE, self.twin.fault_open, self.twin.fault_clear)

    def reload_model(self) -> bool:
        """Swap in a newly promoted model, if there is one; return whether it changed."""
        scorer = self.models.poll()
        if scorer is None:
            return False
        old = self.ctx.scorer.version
        self._fault_thresholds(scorer)
        self.ctx.scorer = scorer
        metrics.MODEL_INFO.labels(old).set(0)
        metrics.MODEL_INFO.labels(scorer.version).set(1)
        log.info("model changed: %s → %s", old, scorer.version)
        return True


def _ensure_changelogs(settings: Settings, bootstrap: str) -> list[Any]:
    """Create the partition-state changelogs; refuse ones whose partition count differs from
    the telemetry topic's (state of partition p lives on changelog partition p)."""
    specs = state_topic_specs(settings.app_id, settings.topic_partitions)
    kafka.ensure_topics(bootstrap, specs, settings.topic_replication_factor)
    present = kafka.list_topics(bootstrap)
    for spec in specs:
        have = present[spec.name].partitions if spec.name in present else 0
        if have != spec.partitions:
            raise StreamsError(
                f"changelog topic {spec.name} has {have} partitions, {TELEMETRY} needs "
                f"{spec.partitions} (EVTWIN_TOPIC_PARTITIONS); delete it or use another EVTWIN_APP_ID")
    return specs


def build_app(settings: Settings, endpoints: Endpoints, worker: ScoreWorker) -> Any:
    """The Faust app of the score workers, configured from ``settings``."""
    from streams.runtime.agent import batch_agent
    from streams.runtime.faust_app import export_lag, make_app

    app = make_app(settings, endpoints.kafka_bootstrap_servers, settings.app_id, settings.batch_size)

    async def follow_assignment(messages: Sequence[Any]) -> None:
        assigned = {tp.partition for tp in app.consumer.assignment()}
        if assigned != worker.partitions:  # restoring reads a topic: off the event loop
            await asyncio.to_thread(worker.sync_assignment, assigned)

    def score(chunk: Sequence[Any]) -> None:
        # Faust's messages have the fields of RawRecord (key, value, topic, partition, offset)
        worker.note_partitions(chunk)
        worker.handle(chunk)

    batch_agent(app, TELEMETRY, "score_telemetry", score, partitions=settings.topic_partitions,
                chunk_size=settings.batch_size, on_fetch=follow_assignment)

    @app.timer(interval=settings.model_poll_s)
    async def reload_model() -> None:
        # Loading a model takes a while: off the event loop, so scoring goes on meanwhile.
        await asyncio.to_thread(worker.reload_model)

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        await export_lag(app)

    return app


def run_worker(settings: Settings, endpoints: Endpoints) -> int:
    """Run one score-worker replica until SIGINT/SIGTERM."""
    from streams.runtime.faust_app import run_app
    from streams.runtime.health import HEALTH

    models = ModelSource(settings)
    worker = ScoreWorker(settings, endpoints, models)
    HEALTH.met("model")  # /readyz: the model is loaded; joining the group is the other half
    app = build_app(settings, endpoints, worker)
    metrics.serve_metrics(settings.metrics_port)
    log.info("score worker %s: model %s, metrics on :%s", settings.app_id,
             worker.ctx.scorer.version, settings.metrics_port or "off")
    run_app(app, settings.log_level)
    return 0


__all__ = ["ScoreWorker", "build_app", "run_worker"]
