"""Reading a Kafka topic from the beginning with an independent consumer."""

from __future__ import annotations

import os
import time


def read_topic(bootstrap: str, topic: str, keep, want: int, timeout: float = 30.0, done=None) -> list:  # type: ignore[no-untyped-def]
    """Read ``topic`` from the beginning until ``want`` messages pass ``keep``, or ``done(found)``
    says so, or ``timeout`` passes."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from connectors import kafka

    # With the process's Kafka security (connectors.kafka.use_security), as our clients have.
    consumer = Consumer(kafka.client_config(bootstrap, **{"group.id": f"test-{os.getpid()}-{time.time()}",
                                                          "enable.auto.commit": False, "fetch.wait.max.ms": 50}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        found = []
        deadline = time.monotonic() + timeout
        while len(found) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error() and keep(msg):
                found.append(msg)
                if done is not None and done(found):
                    break
        return found
    finally:
        consumer.close()


def prediction_ids(bootstrap: str, want: set[str], timeout: float) -> set[str]:
    """Event ids of the predictions for ``want`` (read from the beginning with the process's Kafka
    security) that are on the predictions topic within ``timeout``."""
    from connectors.endpoints import Endpoints
    from streams.runtime.codecs import codec_for
    from streams.topics import PREDICTIONS

    ep = Endpoints(kafka_bootstrap_servers=bootstrap, database_url=None, mqtt_url=None,
                   schema_registry_url=None, mlflow_tracking_uri=None)
    codec = codec_for(PREDICTIONS, ep)
    seen: set[str] = set()

    def done(found: list) -> bool:  # type: ignore[type-arg]
        seen.add(codec.decode(found[-1].value())["event_id"])
        return want <= seen

    read_topic(bootstrap, PREDICTIONS, lambda m: True, 10**9, timeout, done)
    return seen & want
