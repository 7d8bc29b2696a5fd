"""Simulator readings produced straight to the telemetry topic, with their event ids."""

from __future__ import annotations

import threading
import time

from connectors import kafka
from models.physics.fleet import Fleet
from schemas.codec import AvroCodec
from streams.sources.simulator import FleetSimulator


def simulate(bootstrap: str, prefix: str, batteries: int, events: int, seed: int = 11) -> list[str]:
    """Produce ``events`` readings of a fleet of ``batteries`` packs named ``prefix…`` (as fast as
    the simulator goes, through :func:`connectors.kafka.producer`); return their event ids."""
    ids: list[str] = []
    codec = AvroCodec("telemetry")

    class Recording:
        def encode(self, record: dict) -> bytes:
            ids.append(record["event_id"])
            return codec.encode(record)

    fleet = Fleet(batteries, seed=seed, start_time_s=time.time(), id_prefix=prefix)
    sim = FleetSimulator(fleet, kafka.producer(bootstrap), Recording(), None, 1.0, 24.0)  # type: ignore[arg-type]
    sim.run(threading.Event(), max_events=events, realtime=False)
    return ids
