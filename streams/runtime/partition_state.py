"""Per-partition state: key → value maps owned by the replica that owns the partition, kept in a
compacted changelog topic, restored when a partition is assigned and dropped when it is revoked.

A score worker remembers things about the batteries of its partitions (open alert episodes today,
the per-battery estimator later). When a rebalance moves a partition to another replica, that
replica must continue from the same state; when a worker crashes, its replacement must too.

How: every change is written to the changelog topic (one record per key, ``None`` deletes) on
the **same partition number** as the source partition, and made durable together with the batch's
outputs, before the batch is acknowledged. On assignment, the new owner reads the changelog
partitions from the beginning **up to a barrier record it wrote itself** — not up to the end offset
the broker reports, which one of our embedded brokers (Tansu) gets wrong; the barrier works on any
broker that keeps a partition in order. Restored state may be *ahead* of the committed offsets
after a crash (the batch's outputs and state were durable, its commit was not); the replayed
events then meet state that already saw them, which the users of this class tolerate
(at-least-once, like every output).

Why not Faust tables: measured on both embedded brokers (see the README's Operations section),
and Faust's table recovery reads to the reported end offset as well.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streams.errors import StreamsError

log = logging.getLogger(__name__)

V = TypeVar("V")

BARRIER_KEY = b"\x00evtwin.barrier"
BARRIER_HEADER = "evtwin.barrier"


class StateRestoreError(StreamsError):
    """A changelog partition could not be read up to the barrier in time."""


class PartitionState(Generic[V]):
    """Key → value maps per partition, backed by a changelog topic.

    Args:
        changelog: Name of the changelog topic (compacted; as many partitions as the source).
        to_json: Turns a value into a JSON-serialisable object (with ``binary``: into bytes).
        from_json: Turns that object back into a value (with ``binary``: from bytes).
        binary: The changelog value is what ``to_json`` returns, as it is (no JSON): for values
            that are many and already compact, such as the twin's packed per-battery states,
            where the JSON text and its base64 cost more CPU than the state update itself.
    """

    def __init__(self, changelog: str, to_json: Callable[[V], Any],
                 from_json: Callable[[Any], V], *, binary: bool = False) -> None:
        self.changelog = changelog
        if binary:
            self._encode: Callable[[V], bytes] = to_json
            self._decode: Callable[[bytes], V] = from_json
        else:
            self._encode = lambda value: json.dumps(to_json(value)).encode()
            self._decode = lambda data: from_json(json.loads(data))
        self.tables: dict[int, dict[str, V]] = {}
        self.dirty: dict[int, set[str]] = {}

    def decode(self, data: bytes) -> V:
        """A value as read from the changelog (e.g. by a tool or a test reading the topic)."""
        return self._decode(data)

    # --- reads and writes (in memory; changes are remembered for the next flush)
    def get(self, partition: int, key: str) -> V | None:
        table = self.tables.get(partition)
        return None if table is None else table.get(key)

    def put(self, partition: int, key: str, value: V) -> None:
        self.tables.setdefault(partition, {})[key] = value
        self.dirty.setdefault(partition, set()).add(key)

    def delete(self, partition: int, key: str) -> None:
        table = self.tables.get(partition)
        if table is not None and table.pop(key, None) is not None:
            self.dirty.setdefault(partition, set()).add(key)

    def touch(self, partition: int, key: str) -> None:
        """Mark ``key`` changed after its (mutable) value was changed in place."""
        if key in self.tables.get(partition, {}):
            self.dirty.setdefault(partition, set()).add(key)

    def items(self) -> Iterator[tuple[int, str, V]]:
        """Every (partition, key, value) this replica holds."""
        for partition, table in self.tables.items():
            for key, value in table.items():
                yield partition, key, value

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables.values())

    @property
    def partitions(self) -> set[int]:
        return set(self.tables)

    # --- durability
    def flush_changes(self, produce: Callable[..., None]) -> int:
        """Hand every change since the last call to ``produce(topic, value, key, partition=p)``
        (a confluent-kafka producer's ``produce``); the caller flushes the producer before it
        acknowledges the batch. Returns the number of records produced."""
        n = 0
        encode, changelog = self._encode, self.changelog
        for partition, keys in self.dirty.items():
            table = self.tables.get(partition, {})
            for key in keys:
                value = table.get(key)
                payload = None if value is None else encode(value)
                produce(changelog, payload, key.encode(), partition=partition)
                n += 1
        self.dirty.clear()
        return n

    # --- ownership
    def revoke(self, partitions: Iterable[int]) -> None:
        """Drop the state of partitions this replica no longer owns."""
        for p in partitions:
            self.tables.pop(p, None)
            self.dirty.pop(p, None)

    def assign(self, partitions: Iterable[int], producer: Any, consumer_factory: Callable[[], Any],
               timeout_s: float = 30.0) -> int:
        """Restore ``partitions`` from the changelog; return the number of keys restored.

        Args:
            partitions: Partitions newly owned.
            producer: A confluent-kafka producer (writes the barriers).
            consumer_factory: Returns a confluent-kafka consumer (closed here after use).
            timeout_s: Longest time to read up to the barriers.

        Raises:
            StateRestoreError: when a barrier was not read back in ``timeout_s``.
        """
        todo = sorted(set(partitions))
        if not todo:
            return 0
        barrier = uuid.uuid4().hex.encode()
        for p in todo:
            producer.produce(self.changelog, None, BARRIER_KEY, partition=p,
                             headers=[(BARRIER_HEADER, barrier)])
        if producer.flush(timeout_s):
            raise StateRestoreError(f"could not write restore barriers to {self.changelog}")
        restored: dict[int, dict[str, V]] = {p: {} for p in todo}
        self._read_until_barrier(consumer_factory(), todo, barrier, restored, timeout_s)
        for p, table in restored.items():
            self.tables[p] = table
            self.dirty.pop(p, None)
        return sum(len(t) for t in restored.values())

    def _read_until_barrier(self, consumer: Any, todo: list[int], barrier: bytes,
                            restored: dict[int, dict[str, V]], timeout_s: float) -> None:
        waiting = set(todo)
        deadline = time.monotonic() + timeout_s
        try:
            consumer.assign([TopicPartition(self.changelog, p, OFFSET_BEGINNING) for p in todo])
            while waiting and time.monotonic() < deadline:
                for msg in consumer.consume(10_000, 0.2):
                    if msg.error():
                        continue
                    p, key = msg.partition(), msg.key() or b""
                    if key == BARRIER_KEY:
                        if dict(msg.headers() or []).get(BARRIER_HEADER) == barrier:
                            waiting.discard(p)
                        continue
                    if p not in waiting:
                        continue  # past our barrier: written by whoever owns it next
                    value = msg.value()
                    if value is None:
                        restored[p].pop(key.decode(), None)
                    else:
                        restored[p][key.decode()] = self._decode(value)
        finally:
            consumer.close()
        if waiting:
            raise StateRestoreError(
                f"{self.changelog}: partitions {sorted(waiting)} not restored in {timeout_s:g} s "
                "(the barrier written at assignment did not come back)")


__all__ = ["PartitionState", "StateRestoreError"]
