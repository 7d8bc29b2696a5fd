"""The one Faust app that runs sinks: ``evtwin sink`` (the database), ``evtwin mqtt-bridge`` (MQTT),
and any other :class:`streams.sinks.base.Sink`.

One agent per topic (``write_predictions``, ``write_alerts``) decodes each fetch once and offers it
to every sink of that topic, each retried on its own until it took the batch (see
:mod:`streams.runtime.agent`); then the fetch is acknowledged. Each process is one consumer group
(``--app-id``), so an MQTT outage never holds the database back: run one process per kind of sink.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from connectors.endpoints import Endpoints
from schemas import DecodeError
from streams.errors import CliError, SinkError
from streams.runtime import metrics
from streams.runtime.agent import batch_agent, handle_until_done
from streams.runtime.codecs import codec_for
from streams.settings import Settings
from streams.sinks import SINK_KINDS
from streams.sinks.base import Sink, SinkBatch

log = logging.getLogger(__name__)

def make_sink(kind: str, settings: Settings, endpoints: Endpoints) -> Sink:
    """Build the sink of ``kind`` (one of :data:`SINK_KINDS`).

    Raises:
        CliError: for an unknown kind.
    """
    import importlib

    if kind not in SINK_KINDS:
        raise CliError(f"unknown sink {kind!r}; known: {', '.join(SINK_KINDS)}")
    module, cls = SINK_KINDS[kind].split(":")
    sink: Sink = getattr(importlib.import_module(module), cls)(settings, endpoints)
    return sink


class DeadLetters:
    """Screens fetches of a topic of outside input: records that do not decode, or that a sink
    rejects (:meth:`Sink.reject`), go whole to ``target`` with the reason (in the envelope and the
    headers, as the score workers' dead letters), counted in ``evtwin_dead_letters_total``. The
    reason starts with the sinks' names: each consumer group of the topic screens it, so a bad
    record lands there once per group that met it."""

    def __init__(self, topic: str, target: str, endpoints: Endpoints) -> None:
        self.topic, self.target = topic, target
        self.endpoints = endpoints
        self.codec = codec_for(target, endpoints)
        self.producer: Any = None

    def screen(self, codec: Any, sinks: Sequence[Sink], messages: Sequence[Any]) -> SinkBatch:
        """The fetch's usable records; the others are dead-lettered (durably) first."""
        records, kept, dead = [], [], []
        who = "/".join(s.name for s in sinks) + " sink: "
        for m in messages:
            try:
                record = codec.decode(m.value)
            except DecodeError as exc:
                dead.append((m, who + str(exc), "decode_error"))
                continue
            reason = next((r for r in (s.reject(self.topic, record) for s in sinks) if r is not None), None)
            if reason is not None:
                dead.append((m, who + reason, "validation_error"))
                continue
            records.append(record)
            kept.append(m)
        if dead:
            self._send(dead)
        return SinkBatch(self.topic, records, kept)

    def _send(self, dead: list[tuple[Any, str, str]]) -> None:
        from connectors import KafkaDeliveryError, kafka
        from streams.scoring.deadletter import dead_letter

        if self.producer is None:
            self.producer = kafka.checked_producer(self.endpoints.kafka_bootstrap_servers)
        for m, reason, kind in dead:
            value, headers = dead_letter(self.codec, reason=reason, error_type=kind, source_topic=self.topic,
                                         partition=m.partition, offset=m.offset, key=m.key, value=m.value)
            self.producer.produce(self.target, value, m.key, headers=headers)
            log.warning("dead letter to %s: %s (topic %s partition %s offset %s key %r)", self.target,
                        reason, self.topic, m.partition, m.offset, m.key)
        try:
            self.producer.flush_delivered(30)
        except KafkaDeliveryError as exc:  # retried with the fetch, which is not acknowledged
            raise SinkError(f"could not write {len(dead)} dead letters to {self.target}: {exc}") from exc
        for _, _, kind in dead:
            metrics.DEAD_LETTERS.labels(kind).inc()


def _topic_handler(topic: str, codec: Any, sinks: Sequence[Sink],
                   dead_letters: DeadLetters | None = None) -> Callable[[Sequence[Any]], Any]:
    """Decode a fetch of ``topic`` once and offer it to each sink until each has taken it."""

    async def handle(messages: Sequence[Any]) -> None:
        if dead_letters is not None:  # outside input: what cannot be used goes to its dead letters
            batch = await asyncio.to_thread(dead_letters.screen, codec, sinks, messages)
        else:
            # Our own topics hold only records our agents wrote: one that does not decode is a bug
            # worth a retry loop in the logs, not a silent skip.
            batch = SinkBatch(topic, [codec.decode(m.value) for m in messages], messages)
        for sink in sinks:
            await handle_until_done(_offer_to(sink, batch), messages, f"sink {sink.name}")
        metrics.EVENTS_IN.labels(topic).inc(len(messages))

    return handle


def _offer_to(sink: Sink, batch: SinkBatch) -> Callable[[Sequence[Any]], Any]:
    async def offer(_: Sequence[Any]) -> None:
        await _deliver(sink, batch)

    return offer


async def _deliver(sink: Sink, batch: SinkBatch) -> None:
    if sink.blocking:
        await asyncio.to_thread(_write_and_flush, sink, batch)
    else:
        _write_and_flush(sink, batch)
    sink.report()


def _write_and_flush(sink: Sink, batch: SinkBatch) -> None:
    sink.write(batch)
    sink.flush()


def build_sink_app(settings: Settings, endpoints: Endpoints, app_id: str, sinks: Sequence[Sink]) -> Any:
    """The Faust app (consumer group ``app_id``) that feeds ``sinks``."""
    from streams.runtime.faust_app import export_lag, make_app

    app = make_app(settings, endpoints.kafka_bootstrap_servers, app_id, 5000)
    topics = sorted({t for s in sinks for t in s.topics})
    for topic in topics:
        takers = [s for s in sinks if topic in s.topics]
        targets = {s.dead_letter_topics[topic] for s in takers if topic in s.dead_letter_topics}
        if len(targets) > 1:
            raise SinkError(f"sinks of {topic} name different dead-letter topics: {sorted(targets)}")
        screen = DeadLetters(topic, targets.pop(), endpoints) if targets else None
        handle = _topic_handler(topic, codec_for(topic, endpoints), takers, screen)
        batch_agent(app, topic, "write_" + topic.split(".")[1], handle,
                    partitions=settings.topic_partitions)

    for sink in sinks:
        for interval, work in sink.timers():
            app.timer(interval=interval, name=f"{sink.name}.{work.__name__}")(_in_thread(work))

    @app.timer(interval=5.0)
    async def report() -> None:
        for sink in sinks:
            sink.report()
        await export_lag(app)

    return app


def _in_thread(work: Callable[[], object]) -> Callable[[], Any]:
    async def run() -> None:
        try:
            await asyncio.to_thread(work)
        except Exception as exc:  # a periodic job that fails is logged and tried next time
            log.warning("%s failed: %s", work.__name__, exc)

    return run


def run_sinks(settings: Settings, endpoints: Endpoints, app_id: str, sinks: Sequence[Sink]) -> int:
    """Set ``sinks`` up, run them until SIGINT/SIGTERM, close them."""
    from streams.runtime.faust_app import run_app

    for sink in sinks:
        sink.setup()
    app = build_sink_app(settings, endpoints, app_id, sinks)
    metrics.serve_metrics(settings.metrics_port)
    log.info("sinks %s (group %s), metrics on :%s", ", ".join(s.name for s in sinks), app_id,
             settings.metrics_port or "off")
    try:
        run_app(app, settings.log_level)
    finally:
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:  # close the others all the same
                log.warning("closing sink %s failed: %s", sink.name, exc)
    return 0


__all__ = ["DeadLetters", "build_sink_app", "make_sink", "run_sinks"]
