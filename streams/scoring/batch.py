"""Scoring of one micro-batch: decode → validate → features → score → encode.

Plain functions, no Faust: the score agent calls :func:`score_batch` with the raw records of a
batch; tests and benchmarks call it directly. One model call per model per batch (XGBoost
``inplace_predict`` on the whole feature matrix), never one per event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from schemas import DecodeError
from schemas.codec import AvroCodec
from streams.scoring.deadletter import dead_letter
from streams.scoring.fastencode import PredictionEncoder
from streams.scoring.validation import telemetry_problem

# Telemetry fields a prediction carries (the rest of the prediction comes from the models).
CARRIED = ("event_id", "battery_id", "timestamp", "seq", "soc", "soh", "voltage", "current",
           "temperature", "charge_cycles", "power_consumption")


class RawRecord(NamedTuple):
    """One consumed Kafka record."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass
class BatchResult:
    """What one batch produced: the valid telemetry records (for keys, alerts and metrics), the
    encoded prediction of each, dead letters, and the score columns."""

    records: list[dict[str, Any]] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    dead: list[tuple[bytes | None, bytes, list[tuple[str, bytes]], str]] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)


class ScoringContext:
    """Everything :func:`score_batch` needs, built once per worker.

    Args:
        telemetry_codec: Reads the telemetry topic (both framings).
        prediction_codec: Writes predictions.
        dlq_codec: Writes dead letters.
        scorer: An object with ``version`` and ``score(X) -> dict`` (see :mod:`models.scorer`);
            replaceable at run time (hot reload) through :attr:`scorer`.
        features: ``features(records) -> np.ndarray`` (see :mod:`models.features`).
        max_future_ms: Readings further ahead of now are invalid, ms.
        max_age_ms: Readings older than this are invalid, ms.
    """

    def __init__(self, telemetry_codec: AvroCodec, prediction_codec: AvroCodec,
                 dlq_codec: AvroCodec, scorer: Any, features: Any, max_future_ms: int,
                 max_age_ms: int) -> None:
        self.telemetry_codec = telemetry_codec
        self.prediction_codec = prediction_codec
        self.dlq_codec = dlq_codec
        self.scorer = scorer
        self.features = features
        self.max_future_ms = max_future_ms
        self.max_age_ms = max_age_ms
        self.encoder = PredictionEncoder(telemetry_codec, prediction_codec)


def _reject(ctx: ScoringContext, result: BatchResult, raw: RawRecord, reason: str,
            error_type: str, now_ms: int) -> None:
    value, headers = dead_letter(
        ctx.dlq_codec, reason=reason, error_type=error_type, source_topic=raw.topic,
        partition=raw.partition, offset=raw.offset, key=raw.key, value=raw.value, now_ms=now_ms)
    result.dead.append((raw.key, value, headers, error_type))


def decode_and_validate(ctx: ScoringContext, batch: Sequence[RawRecord], now_ms: int,
                        result: BatchResult) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Return the valid telemetry records of ``batch`` and their raw values; dead-letter the
    others into ``result``."""
    decode = ctx.telemetry_codec.decode
    valid, raws = [], []
    for raw in batch:
        try:
            record = decode(raw.value)
        except DecodeError as exc:
            _reject(ctx, result, raw, str(exc), "decode_error", now_ms)
            continue
        problem = telemetry_problem(record, now_ms, ctx.max_future_ms, ctx.max_age_ms)
        if problem is not None:
            _reject(ctx, result, raw, problem, "validation_error", now_ms)
            continue
        valid.append(record)
        raws.append(raw.value or b"")  # decoded, so not empty
    return valid, raws


def _prediction(rec: dict[str, Any], row: tuple[float, ...], version: str,
                scored_at: int) -> dict[str, Any]:
    """The full prediction record (used when the telemetry bytes cannot be reused)."""
    out = {k: rec[k] for k in CARRIED}
    out["rul_cycles"], out["rul_p10"], out["rul_p90"], out["failure_probability"], \
        out["anomaly_score"] = row
    out["model_version"] = version
    out["scored_at"] = scored_at
    return out


def score_batch(ctx: ScoringContext, batch: Sequence[RawRecord]) -> BatchResult:
    """Score one micro-batch; every record ends up as exactly one prediction or one dead letter."""
    now_ms = int(time.time() * 1000)
    result = BatchResult()
    records, raws = decode_and_validate(ctx, batch, now_ms, result)
    if not records:
        return result
    scorer = ctx.scorer  # one model for the whole batch, even if a reload lands meanwhile
    scores = scorer.score(ctx.features(records))
    columns = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
    version = scorer.version
    scored_at = int(time.time() * 1000)
    tail = ctx.encoder.tail(version, scored_at)
    rows = zip(*(columns[k].tolist() for k in ("rul_p50", "rul_p10", "rul_p90",
                                                "failure_probability", "anomaly_score")), strict=True)
    reuse, encode = ctx.encoder.reuse, ctx.prediction_codec.encode
    for rec, raw, row in zip(records, raws, rows, strict=True):
        value = reuse(raw, rec, row, tail)
        if value is None:  # written with an older schema: encode every field
            value = encode(_prediction(rec, row, version, scored_at))
        result.encoded.append(value)
    result.records = records
    columns["soc"] = np.fromiter((r["soc"] for r in records), float, len(records))
    columns["soh"] = np.fromiter((r["soh"] for r in records), float, len(records))
    columns["temperature"] = np.fromiter((r["temperature"] for r in records), float, len(records))
    columns["timestamp"] = np.fromiter((r["timestamp"] for r in records), np.int64, len(records))
    result.columns = columns
    return result


__all__ = ["BatchResult", "CARRIED", "RawRecord", "ScoringContext", "decode_and_validate", "score_batch"]
