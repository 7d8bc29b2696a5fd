"""The MQTT ingest bridge does not lose readings silently: a record its Kafka producer gives up on
is logged and counted. A real confluent-kafka producer whose broker never answers times the
record out (what a refused or undeliverable record looks like to the bridge)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from connectors import kafka
from schemas.codec import AvroCodec
from streams.sources.ingest import IngestBridge


def test_a_reading_kafka_never_takes_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    producer = kafka.checked_producer("127.0.0.1:1", **{"message.timeout.ms": 300, "linger.ms": 0,
                                                         "log_level": 0})
    bridge = IngestBridge(producer, AvroCodec("telemetry"), AvroCodec("dead_letter"),
                          max_future_ms=300_000, max_age_ms=86_400_000)
    reading = {"timestamp": int(time.time() * 1000), "soc": 55.0, "soh": 97.0, "voltage": 371.0,
               "current": 12.0, "temperature": 24.0, "charge_cycles": 12, "power_consumption": 4.45}
    assert bridge.handle("ev/battery/DEV-1/telemetry", json.dumps(reading).encode())
    assert bridge.stats.forwarded == 1 and bridge.check_delivery() == 0  # not given up yet
    caplog.set_level(logging.ERROR, logger="streams.sources.ingest")
    deadline = time.monotonic() + 10
    while bridge.stats.lost == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        bridge.check_delivery()
    assert bridge.stats.lost == 1
    assert "1 reading(s) from MQTT not delivered to Kafka and lost" in caplog.text
    assert "ev.telemetry.v1" in caplog.text and "timed out" in caplog.text
    assert bridge.check_delivery() == 0  # reported once
