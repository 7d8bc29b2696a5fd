"""Predictions built from the telemetry bytes equal a full Avro encode, byte for byte."""

from __future__ import annotations

import io
import math

import fastavro
import pytest

from schemas import published_versions
from schemas.codec import SINGLE_OBJECT_MAGIC, AvroCodec, fingerprint
from streams.scoring.batch import _prediction
from streams.scoring.fastencode import PredictionEncoder


def _telemetry(**changes: object) -> dict:
    record = {"event_id": "5f0c7d4e-1111-4a5b-9c3d-000000000042", "battery_id": "BATTERY_0042",
              "timestamp": 1760956215123, "seq": 123456789, "soc": 55.25, "soh": 93.1,
              "voltage": 371.4, "current": -187.5, "temperature": 31.7, "charge_cycles": 812,
              "power_consumption": -69.6, "ambient_temperature": -12.5, "cell_voltage_min": 3.81,
              "cell_voltage_max": 3.86, "service_days": 1402.0, "mode": "CHARGING_DC"}
    record.update(changes)
    return record


@pytest.mark.parametrize("changes", [
    {}, {"ambient_temperature": None}, {"cell_voltage_min": None, "cell_voltage_max": None},
    {"service_days": None, "mode": "UNKNOWN"}, {"seq": 0, "charge_cycles": 0, "event_id": "é€"},
    {"ambient_temperature": None, "cell_voltage_min": None, "cell_voltage_max": None,
     "service_days": None},
])
def test_reused_bytes_equal_a_full_encode(changes: dict) -> None:
    tel_codec, pred_codec = AvroCodec("telemetry"), AvroCodec("prediction")
    encoder = PredictionEncoder(tel_codec, pred_codec)
    raw = tel_codec.encode(_telemetry(**changes))
    record = tel_codec.decode(raw)
    scores = (412.25, 301.0, 530.5, 0.0125, math.pi / 10)
    for fault in ((0.0, False), (0.4375, True), (math.e / 10, False)):
        fast = encoder.reuse(raw, record, scores, encoder.tail("file:abc123", 1760956215999), *fault)
        full = pred_codec.encode(_prediction(record, scores, "file:abc123", 1760956215999, *fault))
        assert fast == full
        decoded = pred_codec.decode(fast)
        assert decoded["rul_cycles"] == 412.25
        assert (decoded["fault_score"], decoded["fault_flag"]) == fault


def test_older_writer_falls_back_to_a_full_encode() -> None:
    tel_codec, pred_codec = AvroCodec("telemetry"), AvroCodec("prediction")
    old = published_versions("telemetry")[0]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), _telemetry())
    raw = SINGLE_OBJECT_MAGIC + fingerprint(old) + body.getvalue()
    encoder = PredictionEncoder(tel_codec, pred_codec)
    assert encoder.reuse(raw, tel_codec.decode(raw), (1.0,) * 5, encoder.tail("v", 1)) is None
