"""Measure what the pipeline needs of an embedded broker: correct end offsets and a quick
consumer-group join. Evidence for the default broker (``evtwin bench broker``)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.embedded.stack import EmbeddedStack
from connectors.kafka import consumer, producer


def probe_broker(settings_cls: Any, kind: str, records: int = 10000) -> dict[str, Any]:
    """Start broker ``kind`` alone in a temporary directory and measure it.

    Returns:
        ``broker``, ``records``, ``high_watermark`` (should equal ``records``),
        ``end_offsets_correct``, ``produce_per_s``, ``group_consume_s`` (subscribe, join and read
        every record, seconds).
    """
    state = Path(tempfile.mkdtemp(prefix="evtwin-probe-"))
    state.chmod(0o755)
    settings = settings_cls(state_dir=state, kafka_broker=kind, embedded_kafka_port=0,
                            database_url="postgresql://unused", mqtt_url="mqtt://unused:1")
    try:
        return _measure(EmbeddedStack(settings), kind, records)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _measure(stack: EmbeddedStack, kind: str, records: int) -> dict[str, Any]:
    with stack as ep:
        bootstrap = ep.kafka_bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("probe", 1, 1)])["probe"].result()
        prod = producer(bootstrap)
        t0 = time.perf_counter()
        for _ in range(records):
            prod.produce("probe", b"x" * 200)
            prod.poll(0)
        prod.flush(30)
        produce_s = time.perf_counter() - t0
        cons = consumer(bootstrap, "probe-group")
        _, high = cons.get_watermark_offsets(TopicPartition("probe", 0), timeout=10)
        cons.subscribe(["probe"])
        t0, seen = time.perf_counter(), 0
        while seen < records and time.perf_counter() - t0 < 60:
            msg = cons.poll(0.5)
            if msg is not None and not msg.error():
                seen += 1
        consume_s = time.perf_counter() - t0
        cons.close()
    return {
        "broker": kind, "records": records, "high_watermark": high,
        "end_offsets_correct": high == records, "produce_per_s": records / produce_s,
        "group_consume_s": consume_s, "consumed": seen,
    }


__all__ = ["probe_broker"]
