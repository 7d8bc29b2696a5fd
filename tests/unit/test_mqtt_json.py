"""The MQTT bridge's JSON: what subscribers parse (orjson, see connectors.mqtt_publisher._encode)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np

from connectors.mqtt_publisher import _encode


def test_a_prediction_reads_back_exactly_in_compact_json() -> None:
    rec = {"battery_id": "pack-1", "timestamp": 1733300000000, "soc": 95.01369279841549,
           "rul_p10": 1e-05, "fault_flag": False, "model_version": "v3", "seq": 7}
    data = _encode(rec)
    assert json.loads(data) == rec  # every float to the bit
    assert b" " not in data.replace(b"pack-1", b"")
    del rec["rul_p10"]  # ("1e-5" here, "1e-05" from json: the same number)
    assert _encode(rec) == json.dumps(rec, separators=(",", ":")).encode()


def test_numpy_scalars_datetimes_and_non_finite_numbers_give_valid_json() -> None:
    out = json.loads(_encode({"n": np.float32(0.5), "i": np.int64(3), "nan": math.nan, "inf": math.inf,
                              "at": datetime(2026, 12, 4, 17, 0, tzinfo=UTC), 1: "key"}))
    assert out == {"n": 0.5, "i": 3, "nan": None, "inf": None, "at": "2026-12-04T17:00:00+00:00", "1": "key"}
