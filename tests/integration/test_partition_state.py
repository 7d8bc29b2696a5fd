"""Partition state survives a change of owner on both embedded brokers: what one replica wrote to
the changelog (sets, updates, deletes, over many produce batches) is exactly what the next owner
restores. The restore reads up to a barrier it wrote itself, so it does not depend on the end
offsets Tansu reports wrongly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from connectors import kafka
from connectors.embedded.stack import EmbeddedStack
from streams.runtime.partition_state import PartitionState
from streams.settings import Settings
from streams.topics import TopicSpec

PARTITIONS = 3


def _state(topic: str) -> PartitionState[dict]:
    return PartitionState(topic, lambda v: v, lambda v: v)


def _churn(state: PartitionState[dict], rng: random.Random, rounds: int, producer: object) -> None:
    """Set, update and delete keys in many small batches, flushing each like a worker does."""
    for r in range(rounds):
        for _ in range(50):
            p, key = rng.randrange(PARTITIONS), f"BAT_{rng.randrange(200):03d}/rule"
            if rng.random() < 0.2:
                state.delete(p, key)
            else:
                state.put(p, key, {"round": r, "n": rng.randrange(1000)})
        state.flush_changes(producer.produce)  # type: ignore[attr-defined]
        assert producer.flush(10) == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("broker", ["noida", "tansu"])
def test_a_new_owner_restores_exactly_what_the_old_one_wrote(broker: str, state_dir: Path) -> None:
    settings = Settings(state_dir=state_dir, kafka_broker=broker, embedded_kafka_port=0,  # type: ignore[arg-type]
                        database_url="postgresql://unused", mqtt_url="mqtt://unused:1")
    topic = "test-alerts-changelog"
    with EmbeddedStack(settings) as ep:
        bootstrap = ep.kafka_bootstrap_servers
        kafka.ensure_topics(bootstrap, [TopicSpec(topic, "json", PARTITIONS, -1, "compact", "test")])
        producer = kafka.producer(bootstrap, **{"linger.ms": 1})
        rng = random.Random(7)

        def consumer() -> object:
            return kafka.consumer(bootstrap, f"restore-{broker}")

        first = _state(topic)
        _churn(first, rng, 40, producer)
        assert len(first) > 50

        second = _state(topic)
        restored = second.assign(range(PARTITIONS), producer, consumer)
        assert restored == len(first)
        assert second.tables == first.tables

        # the new owner goes on; a third one (after another rebalance) continues from there
        _churn(second, rng, 20, producer)
        third = _state(topic)
        third.assign([0, 2], producer, consumer)
        assert third.tables == {p: second.tables.get(p, {}) for p in (0, 2)}
        third.revoke([0])
        assert third.partitions == {2}
