"""Bad input from a producer that is not ours: a raw confluent-kafka producer writes garbage, Avro
of other schemas (framed both ways, and registered in the schema registry), broken bodies,
NaN/inf, out-of-range values, far-future and ancient timestamps, battery ids of unknown formats,
oversized records and duplicate event ids onto ev.telemetry.v1, between good readings, against
the real embedded broker and a real score worker. Every bad record lands on the dead-letter topic
whole, with its reason; evtwin_dead_letters_total counts them by class; every good record around
them is scored exactly once."""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.request
import uuid
from collections import Counter
from typing import Any

from confluent_kafka import Producer

from schemas.codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MAGIC, AvroCodec, fingerprint
from schemas.registry import SchemaRegistryClient
from streams.runtime.codecs import codec_for
from streams.topics import PREDICTIONS, TELEMETRY, TELEMETRY_DLQ
from tests.support.topic_reader import read_topic

FOREIGN_SCHEMA = {"type": "record", "name": "Reading", "namespace": "com.acme.fleet",
                  "fields": [{"name": "vin", "type": "string"}, {"name": "soc", "type": "double"}]}
NOW_MS = int(time.time() * 1000)


def _reading(battery: str, **changes: Any) -> dict[str, Any]:
    record = {"event_id": str(uuid.uuid4()), "battery_id": battery, "timestamp": int(time.time() * 1000),
              "seq": 0, "soc": 60.0, "soh": 95.0, "voltage": 370.0, "current": 20.0, "temperature": 28.0,
              "charge_cycles": 100, "power_consumption": 7.4}
    record.update(changes)
    return record


def _foreign_single_object() -> bytes:
    import io

    import fastavro

    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(FOREIGN_SCHEMA), {"vin": "WVW123", "soc": 50.0})
    return SINGLE_OBJECT_MAGIC + fingerprint(FOREIGN_SCHEMA) + out.getvalue()


def _foreign_confluent(registry_url: str) -> bytes:
    """A record of another team's schema, registered in our registry under their own subject."""
    import io

    import fastavro

    schema_id = SchemaRegistryClient(registry_url).register("acme.readings-value", json.dumps(FOREIGN_SCHEMA))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(FOREIGN_SCHEMA), {"vin": "WVW123", "soc": 50.0})
    return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + out.getvalue()


def _bad_records(tag: str, registry_url: str) -> dict[str, tuple[bytes | None, str, str]]:
    """key -> (value, error_type, a phrase of the reason)."""
    codec = AvroCodec("telemetry")  # single-object; the worker reads both framings
    good = codec.encode(_reading("X"))

    def bad(name: str, **changes: Any) -> bytes:
        return codec.encode(_reading(f"{tag}_{name}", **changes))

    decode, invalid = "decode_error", "validation_error"
    return {
        "garbage": (b"\xde\xad\xbe\xef not avro at all", decode, "not an Avro record"),
        "empty": (b"", decode, "empty value"),
        "tombstone": (None, decode, "empty value"),
        "json": (json.dumps(_reading("J")).encode(), decode, "not an Avro record"),
        "foreign_fingerprint": (_foreign_single_object(), decode, "unknown schema fingerprint"),
        "foreign_registered": (_foreign_confluent(registry_url), decode,
                               "com.acme.fleet.Reading where ev.twin.Telemetry was expected"),
        "unregistered_id": (CONFLUENT_MAGIC + (999_999).to_bytes(4, "big") + good[10:], decode,
                            "unknown schema id 999999"),
        "prediction": (AvroCodec("prediction").encode({
            **_reading("P"), "rul_cycles": 1.0, "rul_p10": 0.0, "rul_p90": 2.0, "failure_probability": 0.1,
            "anomaly_score": 0.0, "model_version": "m", "scored_at": 0}), decode,
            "ev.twin.Prediction where ev.twin.Telemetry was expected"),
        "truncated": (good[:-7], decode, "corrupt ev.twin.Telemetry body"),
        "trailing": (good + b"\x00\x01", decode, "trailing bytes"),
        "nan": (bad("nan", soc=math.nan), invalid, "soc is nan (not a finite number)"),
        "inf": (bad("inf", temperature=math.inf), invalid, "temperature is inf"),
        "neg_inf": (bad("neg_inf", current=-math.inf), invalid, "current is -inf"),
        "soc150": (bad("soc150", soc=150.0), invalid, "soc 150.0 % outside 0..100 %"),
        "volts": (bad("volts", voltage=-5.0), invalid, "voltage -5.0 V outside"),
        "cycles": (bad("cycles", charge_cycles=-1), invalid, "charge_cycles -1 cycles outside"),
        "cells": (bad("cells", cell_voltage_min=4.1, cell_voltage_max=3.9), invalid,
                  "cell_voltage_min 4.1 V above cell_voltage_max 3.9 V"),
        "future": (bad("future", timestamp=NOW_MS + 365 * 86_400_000), invalid, "in the future"),
        "ancient": (bad("ancient", timestamp=0), invalid, "s old (limit"),
        "pre_epoch": (bad("pre_epoch", timestamp=-86_400_000), invalid, "s old (limit"),
        "id_space": (codec.encode(_reading("BATTERY 001")), invalid, "battery_id 'BATTERY 001' is not"),
        "id_empty": (codec.encode(_reading("")), invalid, "battery_id '' is not"),
        "id_path": (codec.encode(_reading("../../etc/passwd")), invalid, "is not 1-50 characters"),
        "id_unicode": (codec.encode(_reading("BATTÉRIE_01")), invalid, "is not 1-50 characters"),
        "id_long": (codec.encode(_reading("B" * 51)), invalid, "is not 1-50 characters"),
        "event_id_long": (bad("event_id_long", event_id="e" * 300), invalid, "event_id of 300 characters"),
        "event_id_empty": (bad("event_id_empty", event_id=""), invalid, "event_id is empty"),
        "oversized": (bad("oversized", event_id="x" * 200_000), "oversized_record", "bytes, more than the"),
        # A valid reading under another pack's key: it would land in another partition than
        # its pack's readings and start a second twin of the pack.
        "key_other": (codec.encode(_reading(f"{tag}_some_pack")), "key_mismatch",
                      f"for battery_id '{tag}_some_pack': the record key must be the battery_id"),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dead_letter_counts(port: int) -> Counter[str]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("evtwin_dead_letters_total{"):
            error_type = line.split('error_type="')[1].split('"')[0]
            counts[error_type] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def test_every_bad_record_is_dead_lettered_with_its_reason_counted_by_class_and_the_good_ones_scored(
        stack, workers) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    tag = f"BAD{uuid.uuid4().hex[:5]}"
    bad = {f"{tag}_{name}": spec for name, spec in _bad_records(tag, ep.schema_registry_url).items()}
    codec = AvroCodec("telemetry")
    producer = Producer({"bootstrap.servers": ep.kafka_bootstrap_servers, "message.max.bytes": 1_000_000})
    good_ids: list[str] = []

    def send_good(n: int) -> None:
        for _ in range(n):
            reading = _reading(f"{tag}_good{len(good_ids) % 7}")
            good_ids.append(reading["event_id"])
            producer.produce(TELEMETRY, codec.encode(reading), reading["battery_id"].encode())

    for key, (value, _, _) in bad.items():
        send_good(2)  # good readings around every bad one
        producer.produce(TELEMETRY, value, key.encode())
    # A duplicate event id: the first reading is scored, the second (a later offset) is not.
    original = _reading(f"{tag}_dup")
    producer.produce(TELEMETRY, codec.encode(original), f"{tag}_dup".encode())
    send_good(2)
    again = {**original, "timestamp": original["timestamp"] + 1000, "seq": 1}
    producer.produce(TELEMETRY, codec.encode(again), f"{tag}_dup".encode())
    bad[f"{tag}_dup"] = (codec.encode(again), "duplicate_event", f"duplicate event_id {original['event_id']}")
    send_good(2)
    assert producer.flush(30) == 0

    port = _free_port()
    workers.start(1, EVTWIN_METRICS_PORT=str(port))
    dead = read_topic(ep.kafka_bootstrap_servers, TELEMETRY_DLQ,
                      lambda m: (m.key() or b"").startswith(tag.encode()), len(bad), timeout=90)
    found = {m.key().decode(): m for m in dead}
    assert set(found) == set(bad), f"missing: {sorted(set(bad) - set(found))}\n{workers.logs()}"
    dlq = codec_for(TELEMETRY_DLQ, ep)
    for key, (value, error_type, phrase) in bad.items():
        headers = dict(found[key].headers())
        envelope = dlq.decode(found[key].value())
        assert phrase in envelope["reason"], (key, envelope["reason"])
        assert headers["evtwin.reason"].decode() == envelope["reason"]
        assert envelope["error_type"] == headers["evtwin.error.type"].decode() == error_type, key
        assert (envelope["original_value"] or b"") == (value or b""), key  # the record, whole
        assert envelope["source_topic"] == TELEMETRY and envelope["source_offset"] >= 0

    preds = read_topic(ep.kafka_bootstrap_servers, PREDICTIONS,
                       lambda m: (m.key() or b"").startswith(tag.encode()), len(good_ids) + 1, timeout=60)
    scored = Counter(codec_for(PREDICTIONS, ep).decode(m.value())["event_id"] for m in preds)
    assert scored == Counter([*good_ids, original["event_id"]]), "each good reading scored exactly once"

    deadline = time.monotonic() + 15  # the counters of the batch are set after its outputs are durable
    want = Counter(error_type for _, error_type, _ in bad.values())
    while _dead_letter_counts(port) != want and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _dead_letter_counts(port) == want
