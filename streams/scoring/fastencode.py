"""Prediction values built from the telemetry bytes they share.

A prediction begins with the same eleven fields, in the same order and types, as the telemetry
record it is made from (``schemas/prediction.avsc`` vs ``schemas/telemetry.avsc``). When the
telemetry was written with the current schema, those fields' Avro bytes are already in hand: the
prediction is that prefix, five doubles, the model version and the scoring time, the fault score
and flag — no per-field encoding. The bytes are identical to a full encode (tested against fastavro); records written with
an older schema take the full encode.
"""

from __future__ import annotations

import struct
from typing import Any

from schemas import SchemaError, load_schema
from schemas.codec import AvroCodec
from schemas.fields import CARRIED_FIELDS

_SHARED = len(CARRIED_FIELDS)  # event_id … power_consumption
_FIVE_DOUBLES = struct.Struct("<5d")
_FAULT = struct.Struct("<d?")  # fault_score (double), fault_flag (Avro boolean: one byte, 0 or 1)


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _check_layout() -> list[str]:
    """The names of the telemetry's nullable doubles after the shared prefix (then comes the mode
    enum), after checking that the schemas still have the layout this module relies on."""
    tel, pred = load_schema("telemetry")["fields"], load_schema("prediction")["fields"]
    tail = tel[_SHARED:]
    layout_ok = (
        [(f["name"], f["type"]) for f in tel[:_SHARED]] == [(f["name"], f["type"]) for f in pred[:_SHARED]]
        and tail[-1]["name"] == "mode" and len(tail[-1]["type"]["symbols"]) < 64
        and all(f["type"] == ["null", "double"] for f in tail[:-1])
        and [f["name"] for f in pred[_SHARED:]] == [
            "rul_cycles", "rul_p10", "rul_p90", "failure_probability", "anomaly_score",
            "model_version", "scored_at", "fault_score", "fault_flag"]
    )
    if not layout_ok:
        raise SchemaError("telemetry/prediction layout changed: update streams/fastencode.py")
    return [f["name"] for f in tail[:-1]]


_NULLABLE_TAIL = tuple(_check_layout())


class PredictionEncoder:
    """Encodes predictions, reusing the telemetry bytes when their writer schema is current.

    Args:
        telemetry_codec: The codec that decoded the telemetry.
        prediction_codec: The codec of the predictions (its framing is used).
    """

    def __init__(self, telemetry_codec: AvroCodec, prediction_codec: AvroCodec) -> None:
        self.telemetry_codec = telemetry_codec
        self.prediction_codec = prediction_codec

    def tail(self, model_version: str, scored_at: int) -> bytes:
        """The bytes after the five doubles: the same for a whole batch."""
        version = model_version.encode()
        return _zigzag(len(version)) + version + _zigzag(scored_at)

    def reuse(self, raw: bytes, record: dict[str, Any], scores: tuple[float, ...],
              tail: bytes, fault_score: float = 0.0, fault_flag: bool = False) -> bytes | None:
        """The prediction value for telemetry ``raw`` (decoded as ``record``), or ``None`` when
        ``raw`` was written with another schema version (then encode the full record).

        Args:
            raw: The telemetry value as consumed.
            record: It, decoded.
            scores: rul_p50, rul_p10, rul_p90, failure_probability, anomaly_score.
            tail: :meth:`tail` of this batch.
            fault_score: The battery's fault score after the reading.
            fault_flag: Whether the twin flags the battery faulty.
        """
        offset = self.telemetry_codec.current_body_offset(raw)
        if offset is None:
            return None
        suffix = 1 + sum(1 if record[name] is None else 9 for name in _NULLABLE_TAIL)
        return b"".join((self.prediction_codec.header, raw[offset:len(raw) - suffix],
                         _FIVE_DOUBLES.pack(*scores), tail, _FAULT.pack(fault_score, fault_flag)))


__all__ = ["PredictionEncoder"]
