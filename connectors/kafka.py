"""Kafka clients (confluent-kafka) tuned for our topics, and topic administration."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from connectors import KafkaAdminError

log = logging.getLogger(__name__)


def producer(bootstrap_servers: str, **overrides: Any) -> Producer:
    """A producer that batches: linger 5 ms, lz4, idempotence off (the embedded brokers differ in
    their support), acks=all."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "acks": "all",
        "queue.buffering.max.messages": 500000,
    }
    config.update(overrides)
    return Producer(config)


def consumer(bootstrap_servers: str, group_id: str, **overrides: Any) -> Consumer:
    """A consumer with manual commits and a short session timeout (fast rebalances)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "fetch.wait.max.ms": 50,
    }
    config.update(overrides)
    return Consumer(config)


@dataclass(frozen=True)
class TopicState:
    """What the broker reports about one topic."""

    name: str
    partitions: int


def admin(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers})


def list_topics(bootstrap_servers: str, timeout_s: float = 10.0) -> dict[str, TopicState]:
    """Return the topics on the broker (internal ``__`` topics excluded)."""
    try:
        meta = admin(bootstrap_servers).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaAdminError(f"cannot list topics on {bootstrap_servers}: {exc}") from exc
    return {
        name: TopicState(name, len(t.partitions))
        for name, t in meta.topics.items()
        if not name.startswith("__") and t.error is None
    }


def ensure_topics(bootstrap_servers: str, specs: Iterable[Any], replication: int = 1,
                  timeout_s: float = 15.0) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet; return the names created.

    Idempotent: existing topics are left as they are (a partition count that differs from the
    spec is logged as a warning, never changed silently).
    """
    specs = list(specs)
    existing = list_topics(bootstrap_servers, timeout_s)
    for spec in specs:
        if spec.name in existing and existing[spec.name].partitions != spec.partitions:
            log.warning("topic %s has %d partitions, the spec says %d", spec.name,
                        existing[spec.name].partitions, spec.partitions)
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    client = admin(bootstrap_servers)
    futures = client.create_topics(
        [NewTopic(s.name, s.partitions, replication, config=s.config) for s in missing],
        operation_timeout=timeout_s, request_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaAdminError(f"cannot create topic {name}: {exc.args[0].str()}") from exc
    log.info("created topics: %s", ", ".join(sorted(created)))
    return created


__all__ = ["TopicState", "consumer", "ensure_topics", "list_topics", "producer"]
