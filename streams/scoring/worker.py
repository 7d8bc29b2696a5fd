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

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from connectors import kafka
from connectors.endpoints import Endpoints
from streams.runtime import metrics
from streams.runtime.codecs import codec_for
from streams.scoring.batch import RawRecord, ScoringContext, score_batch
from streams.scoring.model_source import ModelSource
from streams.settings import Settings
from streams.state.alerts import AlertEngine, default_rules
from streams.topics import ALERTS, PREDICTIONS, TELEMETRY, TELEMETRY_DLQ

log = logging.getLogger(__name__)


class ScoreWorker:
    """Scores batches and produces what they yield; owns the alert state of its partitions."""

    def __init__(self, settings: Settings, endpoints: Endpoints, models: ModelSource) -> None:
        from models.features import features_from_records

        self.settings = settings
        self.endpoints = endpoints
        self.models = models
        self.ctx = ScoringContext(
            codec_for(TELEMETRY, endpoints), codec_for(PREDICTIONS, endpoints),
            codec_for(TELEMETRY_DLQ, endpoints), models.current(), features_from_records,
            int(settings.max_future_skew_s * 1000), int(settings.max_event_age_s * 1000))
        self.alert_codec = codec_for(ALERTS, endpoints)
        self.alerts = AlertEngine(default_rules(settings), settings.alert_debounce, settings.alert_silence_s)
        self.producer = kafka.producer(endpoints.kafka_bootstrap_servers, **{"linger.ms": 2})
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
        result = score_batch(self.ctx, batch)
        produce = self.producer.produce
        for rec, value in zip(result.records, result.encoded, strict=True):
            produce(PREDICTIONS, value, rec["battery_id"].encode())
        for key, value, headers, error_type in result.dead:
            produce(TELEMETRY_DLQ, value, key, headers=headers)  # type: ignore[arg-type]
            metrics.DEAD_LETTERS.labels(error_type).inc()
        if result.records:
            partition_of = self.battery_partition.get
            alerts = self.alerts.evaluate(result.records, result.columns)
            alerts += self.alerts.watch_silence(result.records, lambda b: partition_of(b.encode(), -1))
            for alert in alerts:
                produce(ALERTS, self.alert_codec.encode(alert), alert["battery_id"].encode())
                metrics.ALERTS.labels(alert["rule"], alert["status"]).inc()
        self._flush()
        self._observe(batch, result, started)

    def _flush(self) -> None:
        remaining = self.producer.flush(30)
        if remaining:
            raise RuntimeError(f"{remaining} records not delivered in 30 s; not acknowledging the batch")

    def _observe(self, batch: Sequence[RawRecord], result: Any, started: float) -> None:
        n = len(result.records)
        metrics.EVENTS_IN.labels(TELEMETRY).inc(len(batch))
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.SCORING_SECONDS.observe(time.perf_counter() - started)
        if n:
            metrics.EVENTS_OUT.labels(PREDICTIONS).inc(n)
            metrics.PREDICTIONS.inc(n)
            latency = time.time() - result.columns["timestamp"] / 1000.0
            for value in latency[:: max(1, n // 100)]:  # a sample per batch keeps the cost flat
                metrics.EVENT_LATENCY.observe(float(value))
            metrics.observe_batteries([r["battery_id"] for r in result.records], result.columns)

    def note_partitions(self, batch: Sequence[Any]) -> None:
        """Remember which partition each battery (= record key, bytes) lives on."""
        self.battery_partition.update((raw.key, raw.partition) for raw in batch)

    def sync_assignment(self, assigned: set[int]) -> None:
        """Forget the alert state of partitions lost; rebuild it for partitions gained."""
        lost, gained = self.partitions - assigned, assigned - self.partitions
        if lost:
            gone = [b.decode(errors="replace") for b, p in self.battery_partition.items()
                    if p in lost and b is not None]
            self.alerts.forget(gone, lost)
            metrics.forget_batteries(gone)
        if gained:
            self.alerts.restore(self._read_alerts(sorted(gained)))
            log.info("took over partitions %s; %d open alert(s) known", sorted(gained),
                     self.alerts.open_count())
        self.partitions = set(assigned)

    def _read_alerts(self, partitions: list[int]) -> list[dict[str, Any]]:
        """The alert records of ``partitions`` (same keys, same partition numbers as telemetry)."""
        consumer = kafka.consumer(self.endpoints.kafka_bootstrap_servers, f"{self.settings.app_id}-restore")
        try:
            ends = {p: consumer.get_watermark_offsets(TopicPartition(ALERTS, p), timeout=10)[1]
                    for p in partitions}
            todo = {p for p, end in ends.items() if end > 0}
            consumer.assign([TopicPartition(ALERTS, p, OFFSET_BEGINNING) for p in todo])
            out, deadline = [], time.monotonic() + 30
            while todo and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                out.append(self.alert_codec.decode(msg.value()))
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    todo.discard(msg.partition())
            return out
        finally:
            consumer.close()

    def reload_model(self) -> bool:
        """Swap in a newly promoted model, if there is one; return whether it changed."""
        scorer = self.models.poll()
        if scorer is None:
            return False
        old = self.ctx.scorer.version
        self.ctx.scorer = scorer
        metrics.MODEL_INFO.labels(old).set(0)
        metrics.MODEL_INFO.labels(scorer.version).set(1)
        log.info("model changed: %s → %s", old, scorer.version)
        return True


async def _handle_until_done(worker: ScoreWorker, chunk: Sequence[Any]) -> None:
    """Handle ``chunk``, retrying with backoff while the broker or the registry fails.

    Records the pipeline cannot read never get here as errors (they are dead-lettered), so what
    fails is infrastructure, and waiting is the only way not to lose the batch: it is not
    acknowledged until it succeeds. A retry may produce some outputs twice (at-least-once), and a
    batch that failed after its alerts were evaluated counts toward their debounce twice.
    """
    delay = 0.5
    while True:
        try:
            worker.handle(chunk)
            return
        except Exception as exc:
            metrics.BATCH_FAILURES.inc()
            log.warning("a batch of %d records failed (%s); retrying in %.1f s, not acknowledged",
                        len(chunk), exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def build_app(settings: Settings, endpoints: Endpoints, worker: ScoreWorker) -> Any:
    """The Faust app of the score workers, configured from ``settings``."""
    from streams.runtime.batching import deliver_in_batches
    from streams.runtime.faust_app import export_lag, make_app, raw_topic

    app = make_app(settings, endpoints.kafka_bootstrap_servers, settings.app_id, settings.batch_size)
    fetches = deliver_in_batches(app, raw_topic(app, TELEMETRY, settings.topic_partitions))

    @app.agent(fetches, name="score_telemetry")
    async def score_telemetry(stream: Any) -> None:
        """Score every telemetry record: one list of records per fetch (see faust_batching)."""
        ack = app.consumer.ack
        async for messages in stream:
            worker.sync_assignment({tp.partition for tp in app.consumer.assignment()})
            for start in range(0, len(messages), settings.batch_size):
                # Faust's messages have the fields of RawRecord (key, value, topic, partition, offset)
                chunk = messages[start:start + settings.batch_size]
                worker.note_partitions(chunk)
                await _handle_until_done(worker, chunk)
            for m in messages:  # outputs are on the broker: now the offsets may be committed
                ack(m)

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

    models = ModelSource(settings)
    worker = ScoreWorker(settings, endpoints, models)
    app = build_app(settings, endpoints, worker)
    metrics.serve_metrics(settings.metrics_port)
    log.info("score worker %s: model %s, metrics on :%s", settings.app_id,
             worker.ctx.scorer.version, settings.metrics_port or "off")
    run_app(app, settings.log_level)
    return 0


__all__ = ["ScoreWorker", "build_app", "run_worker"]
