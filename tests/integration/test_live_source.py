"""The live source on the real broker: simulator readings decode with the published schema; the
MQTT ingest bridge forwards valid device readings and dead-letters the rest with the reason."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections import defaultdict

import fastavro
import paho.mqtt.client as mqtt

from connectors import kafka
from models.physics.fleet import Fleet
from schemas import published_versions
from schemas.codec import AvroCodec
from streams.sources.ingest import IngestBridge, run_bridge
from streams.sources.simulator import FleetSimulator
from streams.topics import GROUND_TRUTH, TELEMETRY, TELEMETRY_DLQ
from tests.support.topic_reader import read_topic


def _independent_decode(value: bytes) -> dict:
    """Decode with fastavro and the published v1 schema file, not with our codec."""
    assert value[:2] == b"\xc3\x01"
    schema = fastavro.parse_schema(published_versions("telemetry")[0])
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)  # type: ignore[return-value]


def test_simulator_readings_decode_with_the_published_schema(stack) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    prefix = f"SIM{uuid.uuid4().hex[:6]}_"
    fleet = Fleet(20, seed=3, start_time_s=time.time(), id_prefix=prefix)
    sim = FleetSimulator(fleet, kafka.producer(ep.kafka_bootstrap_servers), AvroCodec("telemetry"),
                         AvroCodec("ground_truth"), rate_hz=1.0, speedup=24.0)
    stats = sim.run(threading.Event(), max_events=200, realtime=False)
    assert stats.events >= 200
    msgs = read_topic(ep.kafka_bootstrap_servers, TELEMETRY,
                      lambda m: m.key().decode().startswith(prefix), stats.events)
    assert len(msgs) == stats.events
    seqs = defaultdict(list)
    for m in msgs:
        record = _independent_decode(m.value())
        assert record["battery_id"] == m.key().decode()
        assert 0 <= record["soc"] <= 100 and 300 <= record["voltage"] <= 420
        seqs[record["battery_id"]].append(record["seq"])
    for battery, seq in seqs.items():
        assert seq == sorted(seq) and len(set(seq)) == len(seq), battery  # in order per battery
    ids = [_independent_decode(m.value())["event_id"] for m in msgs]
    assert len(set(ids)) == len(ids)  # event ids are unique random (version 4) UUIDs, as text
    assert all(str(uuid.UUID(e)) == e and uuid.UUID(e).version == 4 for e in ids)
    truths = read_topic(ep.kafka_bootstrap_servers, GROUND_TRUTH,
                        lambda m: m.key().decode().startswith(prefix), stats.events)
    truth_ids = {AvroCodec("ground_truth").decode(m.value())["event_id"] for m in truths}
    assert truth_ids == {_independent_decode(m.value())["event_id"] for m in msgs}


def test_ingest_bridge_forwards_valid_and_dead_letters_invalid(stack) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    battery = f"DEV{uuid.uuid4().hex[:6]}"
    bridge = IngestBridge(kafka.checked_producer(ep.kafka_bootstrap_servers), AvroCodec("telemetry"),
                          AvroCodec("dead_letter"), max_future_ms=300_000, max_age_ms=86_400_000)
    stop = threading.Event()
    thread = threading.Thread(target=run_bridge, args=(bridge, ep.mqtt_url, stop, f"test-{battery}"))
    thread.start()
    try:
        now = int(time.time() * 1000)
        good = {"timestamp": now, "soc": 55.0, "soh": 97.0, "voltage": 371.0, "current": 12.0,
                "temperature": 24.0, "charge_cycles": 12, "power_consumption": 4.45}
        cases = {
            "good": json.dumps(good),
            "not json": "{soc: 5",
            "soc 150": json.dumps({**good, "soc": 150.0}),
            "a year ahead": json.dumps({**good, "timestamp": now + 365 * 86_400_000}),
            "missing field": json.dumps({k: v for k, v in good.items() if k != "voltage"}),
        }
        host, port = ep.mqtt_url.removeprefix("mqtt://").split(":")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect(host, int(port))
        pub.loop_start()
        time.sleep(1.0)  # let the bridge subscribe
        for payload in cases.values():
            pub.publish(f"ev/battery/{battery}/telemetry", payload, qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        forwarded = read_topic(ep.kafka_bootstrap_servers, TELEMETRY,
                               lambda m: m.key() == battery.encode(), 1, timeout=20)
        dead = read_topic(ep.kafka_bootstrap_servers, TELEMETRY_DLQ,
                          lambda m: m.key() == battery.encode(), 4, timeout=20)
    finally:
        stop.set()
        thread.join(10)
    assert len(forwarded) == 1
    assert AvroCodec("telemetry").decode(forwarded[0].value())["soc"] == 55.0
    reasons = [dict(m.headers())["evtwin.reason"].decode() for m in dead]
    assert len(reasons) == 4
    assert any("soc 150.0 % outside 0..100 %" in r for r in reasons)
    assert any("in the future" in r for r in reasons)
    assert any("voltage" in r for r in reasons)
    envelopes = [AvroCodec("dead_letter").decode(m.value()) for m in dead]
    assert {e["source_topic"] for e in envelopes} == {f"mqtt:ev/battery/{battery}/telemetry"}
    assert b"{soc: 5" in [e["original_value"] for e in envelopes]  # the bytes, kept whole
