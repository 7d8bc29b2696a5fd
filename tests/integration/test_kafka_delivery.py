"""``connectors.kafka.CheckedProducer`` against the real broker: a record the broker will never
take is reported (``Producer.flush`` alone counts it as done), and the records that were
delivered are there."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Producer, TopicPartition

from connectors import KafkaDeliveryError, kafka
from streams.topics import TopicSpec


def _topic(bs: str) -> str:
    topic = f"delivery-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(bs, [TopicSpec(topic, "json", 3, 3_600_000, "delete", "test")])
    return topic


def test_plain_flush_counts_a_refused_record_as_done(stack) -> None:  # type: ignore[no-untyped-def]
    """Why CheckedProducer exists: the plain producer's flush says 0 left for a lost record."""
    bs = stack[1].kafka_bootstrap_servers
    topic = _topic(bs)
    reports: list[object] = []
    for _ in range(5):
        producer = Producer({"bootstrap.servers": bs})
        try:
            producer.produce(topic, b"lost", partition=7, on_delivery=lambda err, msg: reports.append(err))
            break
        except KafkaException as exc:  # the producer already knew the partitions: refused at once
            assert exc.args[0].code() == KafkaError._UNKNOWN_PARTITION, exc  # (seen once under load)
    else:
        pytest.fail("every producer refused the record at produce(); none queued it to be lost")
    assert producer.flush(10) == 0
    assert len(reports) == 1 and reports[0] is not None  # … though it was never delivered


def test_refused_record_raises_and_good_ones_arrive(stack) -> None:  # type: ignore[no-untyped-def]
    bs = stack[1].kafka_bootstrap_servers
    topic = _topic(bs)
    producer = kafka.checked_producer(bs)
    producer.produce(topic, b"good-1", b"k", partition=0)
    producer.produce(topic, b"lost", b"k", partition=7)  # the topic has partitions 0-2
    producer.produce(topic, b"good-2", b"k", partition=1)
    with pytest.raises(KafkaDeliveryError, match=rf"1 record\(s\) not delivered: {topic} partition 7: "):
        producer.flush_delivered(10)
    producer.produce(topic, b"good-3", b"k", partition=2)
    producer.flush_delivered(10)  # the failure was reported once; the next flush is clean

    consumer = kafka.consumer(bs, f"delivery-{uuid.uuid4().hex[:8]}")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    got: list[bytes] = []
    try:
        for _ in range(50):
            got += [m.value() for m in consumer.consume(100, 0.2) if m.error() is None]
            if len(got) >= 3:
                break
    finally:
        consumer.close()
    assert sorted(got) == [b"good-1", b"good-2", b"good-3"]
