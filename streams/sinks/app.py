"""Sink agents: predictions and alerts fanned out to PostgreSQL/TimescaleDB and to MQTT.

* ``write_predictions`` / ``write_alerts`` (app ``evtwin-sink``): each fetch is written as one
  transaction (:class:`connectors.timescale.TimescaleWriter`), and only then acknowledged, so Kafka
  offsets are committed after the rows are durable. The writer retries while the database is down
  (the agent waits, the consumer pauses, nothing is lost), and every statement is idempotent, so a
  replay after a crash or rebalance changes no row.
* ``publish_states`` / ``publish_alerts`` (app ``evtwin-mqtt-bridge``): the latest twin state per
  battery (retained) and every alert (QoS 1, buffered through broker outages) on MQTT, plus a fleet
  summary every few seconds (:class:`connectors.mqtt_publisher.MqttPublisher`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge

from connectors.endpoints import Endpoints
from streams.runtime import metrics
from streams.runtime.codecs import codec_for
from streams.settings import Settings
from streams.topics import ALERTS, PREDICTIONS

log = logging.getLogger(__name__)

SINK_ROWS = Counter("evtwin_sink_rows", "Rows written (new or changed) by the database sink", ["table"])
SINK_DB_ERRORS = Counter("evtwin_sink_db_errors", "Failed database attempts of the sink")
MQTT_DROPPED = Counter("evtwin_mqtt_buffer_dropped", "MQTT messages dropped because the buffer was full")
MQTT_PUBLISHED = Counter("evtwin_mqtt_published", "MQTT messages handed to the broker", ["kind"])
MQTT_CONNECTED = Gauge("evtwin_mqtt_connected", "1 while the bridge is connected to the MQTT broker")


class _Counters:
    """Turns a connector's cumulative counters into Prometheus counter increments."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def delta(self, name: str, value: float) -> float:
        previous = self.seen.get(name, 0.0)
        self.seen[name] = value
        return max(0.0, value - previous)


def _decode_all(codec: Any, messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Decode a fetch; our own topics hold only records our agents wrote, so a record that does
    not decode is a bug worth a crash (Faust restarts the agent; nothing is acknowledged)."""
    return [codec.decode(m.value) for m in messages]


class SinkWorker:
    """Writes predictions and alerts to the database."""

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        from connectors.timescale import TimescaleWriter

        if not endpoints.database_url:
            raise ValueError("no database: set EVTWIN_DATABASE_URL or start the stack")
        self.writer = TimescaleWriter(endpoints.database_url, strategy=settings.sink_strategy,
                                      retry_for_s=settings.sink_retry_s)
        self.predictions = codec_for(PREDICTIONS, endpoints)
        self.alerts = codec_for(ALERTS, endpoints)
        self.counters = _Counters()

    async def write(self, topic: str, messages: Sequence[Any]) -> None:
        """Write one fetch of ``topic`` durably (in a thread: the writer blocks)."""
        if topic == PREDICTIONS:
            rows = _decode_all(self.predictions, messages)
            await asyncio.to_thread(self.writer.write_predictions, rows)
        else:
            rows = _decode_all(self.alerts, messages)
            await asyncio.to_thread(self.writer.write_alerts, rows)
        metrics.EVENTS_IN.labels(topic).inc(len(messages))
        self.export()

    def export(self) -> None:
        for table, count in self.writer.rows_written.items():
            SINK_ROWS.labels(table).inc(self.counters.delta(table, count))
        SINK_DB_ERRORS.inc(self.counters.delta("db_errors", self.writer.db_errors))


class BridgeWorker:
    """Publishes twin state, alerts and a fleet summary to MQTT."""

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        from connectors.mqtt_publisher import MqttPublisher

        if not endpoints.mqtt_url:
            raise ValueError("no MQTT broker: set EVTWIN_MQTT_URL or start the stack")
        self.publisher = MqttPublisher(endpoints.mqtt_url, buffer_size=settings.mqtt_buffer_size)
        self.predictions = codec_for(PREDICTIONS, endpoints)
        self.alerts = codec_for(ALERTS, endpoints)
        self.latest: dict[str, dict[str, Any]] = {}
        self.counters = _Counters()

    def publish(self, topic: str, messages: Sequence[Any]) -> None:
        """Publish one fetch (never blocks on the network: the publisher queues)."""
        if topic == PREDICTIONS:
            newest: dict[str, dict[str, Any]] = {}
            for rec in _decode_all(self.predictions, messages):
                old = newest.get(rec["battery_id"])
                if old is None or rec["timestamp"] >= old["timestamp"]:
                    newest[rec["battery_id"]] = rec
            for battery, rec in newest.items():
                known = self.latest.get(battery)
                if known is None or rec["timestamp"] >= known["timestamp"]:
                    self.latest[battery] = rec
                    self.publisher.publish_state(battery, rec)
        else:
            for rec in _decode_all(self.alerts, messages):
                self.publisher.publish_alert(rec["battery_id"], rec)
        metrics.EVENTS_IN.labels(topic).inc(len(messages))
        self.export()

    def summary(self) -> dict[str, Any]:
        """Fleet-wide figures from the latest state of every battery seen."""
        states = list(self.latest.values())
        if not states:
            return {"batteries": 0, "at": int(time.time() * 1000)}

        def mean(key: str) -> float:
            return sum(float(s[key]) for s in states) / len(states)

        return {
            "at": int(time.time() * 1000), "batteries": len(states),
            "mean_soc": mean("soc"), "mean_soh": mean("soh"), "mean_rul_cycles": mean("rul_cycles"),
            "min_rul_cycles": min(float(s["rul_cycles"]) for s in states),
            "high_risk": sum(1 for s in states if s["failure_probability"] > 0.7),
            "max_temperature": max(float(s["temperature"]) for s in states),
        }

    def export(self) -> None:
        MQTT_DROPPED.inc(self.counters.delta("dropped", self.publisher.dropped))
        for kind, count in self.publisher.published.items():
            MQTT_PUBLISHED.labels(kind).inc(self.counters.delta(kind, count))
        MQTT_CONNECTED.set(1 if self.publisher.connected else 0)


def _fanout_app(settings: Settings, endpoints: Endpoints, app_id: str, handle: Any,
                agent_names: dict[str, str]) -> Any:
    """A Faust app with one agent per topic of ``agent_names``; each agent awaits
    ``handle(topic, messages)`` for every fetch and acknowledges it afterwards."""
    from streams.runtime.batching import deliver_in_batches
    from streams.runtime.faust_app import make_app, raw_topic

    app = make_app(settings, endpoints.kafka_bootstrap_servers, app_id, 5000)

    def agent_for(topic: str) -> None:
        fetches = deliver_in_batches(app, raw_topic(app, topic, settings.topic_partitions))

        async def drain(stream: Any) -> None:
            ack = app.consumer.ack
            async for messages in stream:
                await handle(topic, messages)
                for m in messages:  # handled (durable / queued): now the offsets may be committed
                    ack(m)

        app.agent(fetches, name=agent_names[topic])(drain)

    for topic in agent_names:
        agent_for(topic)
    return app


def build_sink_app(settings: Settings, endpoints: Endpoints, sink: SinkWorker) -> Any:
    """The Faust app of the database sink: agents ``write_predictions`` and ``write_alerts``."""
    from streams.runtime.faust_app import export_lag

    app = _fanout_app(settings, endpoints, settings.sink_app_id, sink.write,
                      {PREDICTIONS: "write_predictions", ALERTS: "write_alerts"})

    @app.timer(interval=settings.sink_rollup_refresh_s)
    async def refresh_rollup() -> None:
        await asyncio.to_thread(sink.writer.refresh_rollup)

    @app.timer(interval=5.0)
    async def report() -> None:
        sink.export()
        await export_lag(app)

    return app


def build_bridge_app(settings: Settings, endpoints: Endpoints, bridge: BridgeWorker) -> Any:
    """The Faust app of the MQTT bridge: agents ``publish_states`` and ``publish_alerts``."""
    from streams.runtime.faust_app import export_lag

    async def handle(topic: str, messages: Sequence[Any]) -> None:
        bridge.publish(topic, messages)

    app = _fanout_app(settings, endpoints, settings.bridge_app_id, handle,
                      {PREDICTIONS: "publish_states", ALERTS: "publish_alerts"})

    @app.timer(interval=settings.fleet_summary_s)
    async def publish_fleet_summary() -> None:
        bridge.publisher.publish_fleet_summary(bridge.summary())
        bridge.export()
        await export_lag(app)

    return app


def run_sink(settings: Settings, endpoints: Endpoints) -> int:
    """Run one database-sink replica until SIGINT/SIGTERM."""
    from streams.runtime.faust_app import run_app

    sink = SinkWorker(settings, endpoints)
    sink.writer.connect()  # migrations run here, before any record is consumed
    app = build_sink_app(settings, endpoints, sink)
    metrics.serve_metrics(settings.metrics_port)
    try:
        run_app(app, settings.log_level)
    finally:
        sink.writer.close()
    return 0


def run_bridge(settings: Settings, endpoints: Endpoints) -> int:
    """Run one MQTT-bridge replica until SIGINT/SIGTERM."""
    from streams.runtime.faust_app import run_app

    bridge = BridgeWorker(settings, endpoints)
    bridge.publisher.start()
    app = build_bridge_app(settings, endpoints, bridge)
    metrics.serve_metrics(settings.metrics_port)
    try:
        run_app(app, settings.log_level)
    finally:
        bridge.publisher.stop()
    return 0


__all__ = ["BridgeWorker", "SinkWorker", "build_bridge_app", "build_sink_app", "run_bridge", "run_sink"]
