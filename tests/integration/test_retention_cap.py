"""The embedded broker keeps a delete-policy topic for EVTWIN_EMBEDDED_KAFKA_RETENTION_S at most
(noida-db's cost grows with what it holds), and never touches a compacted topic (state)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from connectors.embedded.retention import RetentionCap
from connectors.kafka import ensure_topics
from streams.topics import TELEMETRY, TopicSpec

WEEK_MS = 7 * 86_400_000


def _config(bootstrap: str, topic: str) -> dict[str, str]:
    client = AdminClient({"bootstrap.servers": bootstrap})
    [future] = client.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    return {k: v.value for k, v in future.result().items()}


def test_the_stack_caps_our_topics_at_the_setting(stack) -> None:  # type: ignore[no-untyped-def]
    settings, ep = stack
    deadline = time.monotonic() + 30
    while _config(ep.kafka_bootstrap_servers, TELEMETRY)["retention.ms"] != str(
            settings.embedded_kafka_retention_s * 1000) and time.monotonic() < deadline:
        time.sleep(0.5)
    config = _config(ep.kafka_bootstrap_servers, TELEMETRY)
    assert config["retention.ms"] == str(settings.embedded_kafka_retention_s * 1000) == "600000"
    assert config["segment.ms"] == "150000"


def test_old_records_go_and_compacted_topics_stay_as_they_are(stack) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    bs = ep.kafka_bootstrap_servers
    history, state = f"cap-history-{uuid.uuid4().hex[:8]}", f"cap-state-{uuid.uuid4().hex[:8]}"
    ensure_topics(bs, [TopicSpec(history, "json", 1, WEEK_MS, "delete", "test"),
                       TopicSpec(state, "json", 1, -1, "compact", "test")])
    producer = Producer({"bootstrap.servers": bs})
    for i in range(500):
        producer.produce(history, b"h" * 100, str(i).encode())
        producer.produce(state, b"s" * 100, str(i % 50).encode())
    assert producer.flush(10) == 0

    cap = RetentionCap(bs, retention_ms=2000)
    capped = cap.apply()
    assert history in capped and state not in capped
    assert cap.apply() == []  # nothing left to do
    assert _config(bs, history)["retention.ms"] == "2000"
    assert _config(bs, history)["segment.ms"] == "1000"
    assert _config(bs, state)["cleanup.policy"] == "compact"
    assert _config(bs, state)["retention.ms"] != "2000"

    consumer = Consumer({"bootstrap.servers": bs, "group.id": f"cap-{uuid.uuid4().hex[:8]}"})
    try:
        deadline = time.monotonic() + 30
        low, high = consumer.get_watermark_offsets(TopicPartition(history, 0), timeout=10)
        while low < high and time.monotonic() < deadline:
            time.sleep(0.5)
            low, high = consumer.get_watermark_offsets(TopicPartition(history, 0), timeout=10)
        assert (low, high) == (500, 500)  # the records older than the cap are gone
        assert consumer.get_watermark_offsets(TopicPartition(state, 0), timeout=10)[0] == 0
    finally:
        consumer.close()
