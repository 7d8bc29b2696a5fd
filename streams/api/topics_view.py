"""What the topics page shows (as Redpanda Console does for our Avro topics): topics, partitions,
end offsets, consumer groups with their lag, and the last records of a topic decoded to JSON."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from fastapi import Path

from connectors import kafka
from streams.api.schemas import (
    GroupLag,
    PartitionInfo,
    TopicInfo,
    TopicRecord,
    TopicRecords,
    TopicsOverview,
)
from streams.topics import spec_for

TIMEOUT_S = 5.0
TOPIC_NAME = Path(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")


class UnknownTopicError(LookupError):
    """No topic of that name on the broker."""


def _consumer(bootstrap: str) -> Consumer:
    return kafka.consumer(bootstrap, f"evtwin-api-peek-{uuid.uuid4().hex[:8]}")


def overview(bootstrap: str) -> TopicsOverview:
    """Every topic with its partitions' offsets, and every consumer group's lag per topic."""
    admin = kafka.admin(bootstrap)
    meta = admin.list_topics(timeout=TIMEOUT_S)
    consumer = _consumer(bootstrap)
    topics, ends = [], {}
    try:
        for name in sorted(meta.topics):
            if name.startswith("__") or meta.topics[name].error is not None:
                continue
            parts = []
            for p in sorted(meta.topics[name].partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=TIMEOUT_S)
                parts.append(PartitionInfo(partition=p, low=low, high=high))
                ends[(name, p)] = high
            spec = spec_for(name)
            topics.append(TopicInfo(name=name, partitions=parts,
                                    messages=sum(p.high - p.low for p in parts),
                                    schema_name=spec.schema if spec else None))
    finally:
        consumer.close()
    return TopicsOverview(topics=topics, groups=_group_lags(admin, ends))


def _group_lags(admin: AdminClient, ends: dict[tuple[str, int], int]) -> list[GroupLag]:
    try:
        listed = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(TIMEOUT_S)
        names = sorted(g.group_id for g in listed.valid if not g.group_id.startswith("evtwin-api-"))
    except Exception:
        return []
    out = []
    for group in names:
        try:
            futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                        request_timeout=TIMEOUT_S)
            committed = futures[group].result(TIMEOUT_S).topic_partitions or []
        except Exception:
            continue
        per_topic: dict[str, dict[str, int]] = {}
        for tp in committed:
            if tp.offset < 0 or (tp.topic, tp.partition) not in ends:
                continue
            lag = max(0, ends[(tp.topic, tp.partition)] - tp.offset)
            per_topic.setdefault(tp.topic, {})[str(tp.partition)] = lag
        for topic, parts in sorted(per_topic.items()):
            out.append(GroupLag(group=group, topic=topic, lag=sum(parts.values()), partitions=parts))
    return out


def _decode(endpoints: Any, topic: str, value: bytes | None) -> Any:
    spec = spec_for(topic)
    if value is None:
        return None
    try:
        if spec is not None and spec.schema != "json":
            from streams.runtime.codecs import codec_for

            return _jsonable(codec_for(topic, endpoints).decode(value))
        return json.loads(value)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:300], "bytes": len(value)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def last_records(endpoints: Any, topic: str, limit: int, partition: int | None) -> TopicRecords:
    """The newest ``limit`` records of ``topic`` (of one partition, or over all), newest first.

    Raises:
        UnknownTopicError: the broker has no such topic.
    """
    bootstrap = endpoints.kafka_bootstrap_servers
    meta = kafka.admin(bootstrap).list_topics(timeout=TIMEOUT_S)
    if topic not in meta.topics or meta.topics[topic].error is not None:
        raise UnknownTopicError(f"no topic {topic!r} on the broker")
    parts = sorted(meta.topics[topic].partitions)
    if partition is not None:
        if partition not in parts:
            raise UnknownTopicError(f"topic {topic!r} has no partition {partition}")
        parts = [partition]
    consumer = _consumer(bootstrap)
    records: list[TopicRecord] = []
    try:
        wanted: dict[int, int] = {}
        assign = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S)
            start = max(low, high - limit)
            if high > start:
                wanted[p] = high
                assign.append(TopicPartition(topic, p, start))
        if assign:
            consumer.assign(assign)
            deadline = time.monotonic() + TIMEOUT_S
            while wanted and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    if msg.error() is not None:
                        continue
                    ts_type, ts = msg.timestamp()
                    key = msg.key()
                    records.append(TopicRecord(
                        partition=msg.partition(), offset=msg.offset(),
                        timestamp=datetime.fromtimestamp(ts / 1000, UTC) if ts_type and ts > 0 else None,
                        key=key.decode(errors="replace") if key is not None else None,
                        value=_decode(endpoints, topic, msg.value())))
                    part, offset = int(msg.partition() or 0), int(msg.offset() or 0)
                    if offset + 1 >= wanted.get(part, 0):
                        wanted.pop(part, None)
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.timestamp or datetime.min.replace(tzinfo=UTC), r.offset), reverse=True)
    return TopicRecords(topic=topic, records=records[:limit])


__all__ = ["TOPIC_NAME", "UnknownTopicError", "last_records", "overview"]
