"""A consumer that rests while its partitions have nothing new (``connectors.kafka.IdleRest``),
against the real broker: it pauses only once it has read every partition to its end, it never
rests on a backlog whose first fetch has not come back yet, and everything produced during its
rests arrives, once, in order."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from connectors import kafka
from streams.topics import TopicSpec


def _topic(bs: str, partitions: int = 3) -> str:
    topic = f"idle-rest-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(bs, [TopicSpec(topic, "json", partitions, 3_600_000, "delete", "test")])
    return topic


def _idle(bs: str, topic: str, rest_s: float) -> kafka.IdleRest:
    consumer = kafka.consumer(bs, f"idle-{uuid.uuid4().hex[:8]}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    return kafka.IdleRest(consumer, rest_s=rest_s)


def test_records_produced_while_resting_arrive_once_in_order(stack) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    bs = ep.kafka_bootstrap_servers
    topic = _topic(bs)
    idle = _idle(bs, topic, rest_s=0.2)
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 0})
    try:
        assert idle.consume(100, 0) == [] and idle.resting  # empty topic, read to its end: rest
        got: list[tuple[int, int]] = []
        sent = turn = 0
        deadline = time.monotonic() + 30
        while (sent < 60 or len(got) < sent) and time.monotonic() < deadline:
            turn += 1
            if sent < 60 and turn % 6 == 0:  # a burst every ~0.3 s: during rests and between them
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
        rests, checks = idle.rests, idle.checks
        while idle.consume(100, 0) or not idle.resting:  # read to the end: resting again
            pass
        time.sleep(0.25)  # past the rest: the next call asks the broker, finds nothing, rests on
        assert idle.consume(100, 0) == [] and idle.resting and idle.checks > checks
        assert idle.rests >= rests
    finally:
        idle.consumer.close()


def test_a_backlog_is_never_rested_on(stack) -> None:  # type: ignore[no-untyped-def]
    """Polled without waiting, the first calls come back empty before the first fetch does: it
    must keep fetching (the broker says there is more), not pause and purge it, on any machine."""
    _, ep = stack
    bs = ep.kafka_bootstrap_servers
    topic = _topic(bs)
    producer = Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for i in range(3000):
        producer.produce(topic, str(i).encode(), key=str(i % 11).encode())
    assert producer.flush(10) == 0
    idle = _idle(bs, topic, rest_s=5.0)  # a rest would outlast the test's patience
    try:
        got: list[int] = []
        empty_calls = 0
        deadline = time.monotonic() + 20
        while len(got) < 3000 and time.monotonic() < deadline:
            batch = idle.consume(500, 0)
            empty_calls += not batch
            got += [int(m.value()) for m in batch if m.error() is None]
        assert sorted(got) == list(range(3000)) and idle.rests == 0
        assert empty_calls > 0  # it was polled before data was there, and did not rest on it
        assert idle.consume(100, 0.5) == [] and idle.resting  # now at the end: it rests
    finally:
        idle.consumer.close()
