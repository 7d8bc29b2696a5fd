"""The simulator spreads a tick's readings over the tick: packs report at their own phase."""

from __future__ import annotations

import threading
import time
from typing import Any

from models.physics.fleet import Fleet
from schemas.codec import AvroCodec
from streams.sources.simulator import FleetSimulator


class Producer:
    """Records what is produced, and when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((time.monotonic(), key))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


class Stamps:
    """A codec that keeps each record's timestamp and pack."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.codec = AvroCodec("telemetry")

    def encode(self, record: dict[str, Any]) -> bytes:
        self.records.append(dict(record))
        return self.codec.encode(record)


def _run(slices: int, ticks: int) -> tuple[Producer, Stamps, float]:
    fleet = Fleet(20, seed=3, start_time_s=time.time())
    producer, stamps = Producer(), Stamps()
    sim = FleetSimulator(fleet, producer, stamps, None, 5.0, 24.0, slices=slices)  # type: ignore[arg-type]
    started = time.monotonic()
    sim.run(threading.Event(), max_events=20 * ticks)
    return producer, stamps, time.monotonic() - started


def test_a_tick_is_sent_in_parts_spread_over_it_each_stamped_when_sent() -> None:
    producer, stamps, _ = _run(slices=4, ticks=2)
    first = stamps.records[:20]
    assert sorted(r["battery_id"] for r in first) == sorted(set(r["battery_id"] for r in first))
    times = sorted({r["timestamp"] for r in first})
    assert len(times) == 4  # one stamp per part
    assert [sum(r["timestamp"] == t for r in first) for t in times] == [5, 5, 5, 5]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(30 <= g <= 200 for g in gaps), gaps  # 1 / (5 Hz * 4) = 50 ms apart
    sent = [t for t, _ in producer.sent[:20]]
    assert 0.12 <= sent[-1] - sent[0] <= 0.6  # the parts went out over the tick, not at once
    # Each pack keeps its phase: its readings stay one tick (200 ms) apart.
    by_pack: dict[str, list[int]] = {}
    for r in stamps.records:
        by_pack.setdefault(r["battery_id"], []).append(r["timestamp"])
    assert all(len(v) == 2 and 150 <= v[1] - v[0] <= 400 for v in by_pack.values()), by_pack


def test_one_part_sends_the_whole_fleet_at_one_instant() -> None:
    _, stamps, _ = _run(slices=1, ticks=1)
    assert len({r["timestamp"] for r in stamps.records}) == 1
