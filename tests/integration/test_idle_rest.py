"""A consumer that rests while its topic is quiet (``connectors.kafka.IdleRest``): it pauses after
an empty poll, and everything produced during its rests still arrives, once, in order."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from connectors import kafka
from streams.topics import TopicSpec


def test_records_produced_while_resting_arrive_once_in_order(stack) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    bs = ep.kafka_bootstrap_servers
    topic = f"idle-rest-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(bs, [TopicSpec(topic, "json", 3, 3_600_000, "delete", "test")])
    consumer = kafka.consumer(bs, f"idle-{uuid.uuid4().hex[:8]}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    idle = kafka.IdleRest(consumer, rest_s=0.2)
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    try:
        assert idle.consume(100, 0) == [] and idle.resting  # nothing yet: paused
        got: list[tuple[int, int]] = []
        sent = 0
        deadline = time.monotonic() + 30
        while (sent < 60 or len(got) < sent) and time.monotonic() < deadline:
            if sent < 60:  # produce in bursts, during rests and between them
                for _ in range(3):
                    producer.produce(topic, str(sent).encode(), key=str(sent % 7).encode())
                    sent += 1
                producer.flush(5)
            got += [(m.partition(), int(m.value())) for m in idle.consume(1000, 0) if m.error() is None]
            time.sleep(0.05)
        values = [v for _, v in got]
        assert sorted(values) == list(range(60))  # every record, none twice
        for p in range(3):  # in order within a partition
            mine = [v for q, v in got if q == p]
            assert mine == sorted(mine)
        assert idle.rests >= 3  # it did rest between the bursts
        rests = idle.rests
        time.sleep(0.3)  # past any rest: the next poll wakes, finds nothing, rests again
        assert idle.consume(100, 0) == [] and idle.resting and idle.rests == rests + 1
    finally:
        consumer.close()
