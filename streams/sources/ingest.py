"""MQTT ingest bridge: devices publish JSON readings to ``ev/battery/<id>/telemetry``; the bridge
validates each one and forwards it as Avro to ``ev.telemetry.v1`` — or, when it is invalid, the
original bytes with the reason to ``ev.telemetry.dlq.v1``. Nothing is dropped silently: a record
the Kafka producer gives up on (refused, or not delivered within its time-out) is logged as an
error and counted (``evtwin_ingest_lost_total``, ``IngestStats.lost``)."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from schemas import EncodeError
from schemas.codec import AvroCodec
from schemas.jsonio import record_from_json
from streams.runtime.health import HEALTH
from streams.scoring.deadletter import dead_letter
from streams.scoring.validation import telemetry_problem
from streams.topics import TELEMETRY, TELEMETRY_DLQ

log = logging.getLogger(__name__)

MQTT_TELEMETRY_FILTER = "ev/battery/+/telemetry"
INGEST_LOST = Counter("evtwin_ingest_lost", "Readings from MQTT the Kafka producer gave up on (refused or timed out)")


@dataclass
class IngestStats:
    forwarded: int = 0
    dead_lettered: int = 0
    lost: int = 0


class IngestBridge:
    """Turns MQTT telemetry messages into Kafka records.

    Args:
        producer: A :class:`connectors.kafka.CheckedProducer` (it reports the records it gives
            up on: :meth:`check_delivery`).
        telemetry_codec: Codec of the ``telemetry`` schema.
        dlq_codec: Codec of the ``dead_letter`` schema.
        max_future_ms: Readings further ahead of now are invalid, milliseconds.
        max_age_ms: Readings older than this are invalid, milliseconds.
    """

    def __init__(self, producer: Any, telemetry_codec: AvroCodec, dlq_codec: AvroCodec,
                 max_future_ms: int, max_age_ms: int) -> None:
        self.producer = producer
        self.telemetry_codec = telemetry_codec
        self.dlq_codec = dlq_codec
        self.max_future_ms = max_future_ms
        self.max_age_ms = max_age_ms
        self.stats = IngestStats()

    def handle(self, mqtt_topic: str, payload: bytes) -> bool:
        """Forward one MQTT message; return True when it went to the telemetry topic."""
        parts = mqtt_topic.split("/")
        topic_id = parts[2] if len(parts) == 4 else None
        try:
            obj = json.loads(payload)
            if isinstance(obj, dict) and topic_id and "battery_id" not in obj:
                obj["battery_id"] = topic_id
            record = record_from_json("telemetry", obj)
            if topic_id and record.get("battery_id") != topic_id:
                raise EncodeError(f"battery_id {record.get('battery_id')!r} differs from the "
                                  f"MQTT topic's {topic_id!r}")
            problem = telemetry_problem(record, int(time.time() * 1000), self.max_future_ms,
                                        self.max_age_ms)
            if problem:
                return self._reject(mqtt_topic, payload, topic_id, problem, "validation_error")
            value = self.telemetry_codec.encode(record)
        except (ValueError, EncodeError) as exc:
            return self._reject(mqtt_topic, payload, topic_id, str(exc), "decode_error")
        self.producer.produce(TELEMETRY, value, record["battery_id"].encode())
        self.producer.poll(0)
        self.stats.forwarded += 1
        return True

    def check_delivery(self) -> int:
        """Serve the producer's delivery reports; log and count the records it gave up on since
        the last call. Returns how many."""
        failures = self.producer.take_failures()
        if not failures:
            return 0
        self.stats.lost += len(failures)
        INGEST_LOST.inc(len(failures))
        log.error("%d reading(s) from MQTT not delivered to Kafka and lost (the MQTT messages were "
                  "acknowledged): %s", len(failures), failures[0])
        return len(failures)

    def _reject(self, mqtt_topic: str, payload: bytes, key: str | None, reason: str,
                error_type: str) -> bool:
        value, headers = dead_letter(
            self.dlq_codec, reason=reason, error_type=error_type,
            source_topic=f"mqtt:{mqtt_topic}", partition=-1, offset=-1,
            key=key.encode() if key else None, value=payload,
        )
        self.producer.produce(TELEMETRY_DLQ, value, key.encode() if key else None, headers=headers)
        self.producer.poll(0)
        self.stats.dead_lettered += 1
        log.info("dead-lettered a reading from %s: %s", mqtt_topic, reason)
        return False


def run_bridge(bridge: IngestBridge, mqtt_url: str, stop: threading.Event,
               client_id: str = "evtwin-ingest") -> IngestStats:
    """Subscribe to device telemetry on ``mqtt_url`` and forward it until ``stop`` is set.

    Uses a persistent session at QoS 1, so readings published while the bridge reconnects are
    delivered when it is back.
    """
    import paho.mqtt.client as mqtt

    from connectors.mqtt_publisher import mqtt_endpoint

    endpoint = mqtt_endpoint(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    endpoint.configure(client)
    HEALTH.expect("mqtt")  # ready (/readyz) while subscribed on the broker

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
        c.subscribe(MQTT_TELEMETRY_FILTER, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda c, u, mid, codes, props=None: HEALTH.met("mqtt")
    client.on_disconnect = lambda c, u, flags, rc, props=None: HEALTH.met("mqtt", ok=False)

    def on_message(c: Any, u: Any, msg: Any) -> None:
        # Some brokers (amqtt 0.12) also hand us retained messages of other subscriptions'
        # filters (e.g. ev/battery/<id>/state): only telemetry topics are readings.
        if mqtt.topic_matches_sub(MQTT_TELEMETRY_FILTER, msg.topic):
            bridge.handle(msg.topic, msg.payload)

    client.on_message = on_message
    client.reconnect_delay_set(1, 10)
    client.connect(endpoint.host, endpoint.port, keepalive=30)
    client.loop_start()
    try:
        while not stop.wait(0.5):
            bridge.check_delivery()
            HEALTH.beat()
    finally:
        client.loop_stop()
        client.disconnect()
        bridge.producer.flush(30)
        bridge.check_delivery()
    return bridge.stats


__all__ = ["MQTT_TELEMETRY_FILTER", "IngestBridge", "run_bridge"]
