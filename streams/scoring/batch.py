"""Scoring of one micro-batch: decode → validate → features → score → encode.

Plain functions, no Faust: the score agent calls :func:`score_batch` with the raw records of a
batch; tests and benchmarks call it directly. One model call per model per batch (XGBoost
``inplace_predict`` on the whole feature matrix), never one per event.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas import DecodeError
from schemas.codec import AvroCodec
from schemas.fields import CARRIED_FIELDS
from streams.runtime.metrics import StageClock
from streams.runtime.records import DeadLetter, RawRecord, ScoredBatch, Scores
from streams.scoring.deadletter import dead_letter
from streams.scoring.fastencode import PredictionEncoder
from streams.scoring.validation import (
    MAX_RECORD_BYTES,
    DuplicateEvents,
    key_problem,
    oversized,
    telemetry_problem,
)

# Telemetry fields a prediction carries (the rest of the prediction comes from the models).
CARRIED = CARRIED_FIELDS


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
        estimator: The per-battery twin state (:class:`streams.state.estimator.TwinEstimator`);
            with it the features come from each battery's state after the reading
            (``models.features.features_from_columns``) instead of ``features``.

    :attr:`clock` accumulates the CPU time of :func:`score_batch`'s stages (decode, validate,
    features, state, score, encode); the worker adds its own and exports them.
    """

    def __init__(self, telemetry_codec: AvroCodec, prediction_codec: AvroCodec,
                 dlq_codec: AvroCodec, scorer: Any, features: Any, max_future_ms: int,
                 max_age_ms: int, estimator: Any = None) -> None:
        self.telemetry_codec = telemetry_codec
        self.prediction_codec = prediction_codec
        self.dlq_codec = dlq_codec
        self.scorer = scorer
        self.features = features
        self.max_future_ms = max_future_ms
        self.max_age_ms = max_age_ms
        self.estimator = estimator
        self.encoder = PredictionEncoder(telemetry_codec, prediction_codec)
        self.duplicates = DuplicateEvents()  # event ids seen lately (a reading sent twice)
        self.clock = StageClock()


def _reject(ctx: ScoringContext, dead: list[DeadLetter], raw: RawRecord, reason: str,
            error_type: str, now_ms: int) -> None:
    value, headers = dead_letter(
        ctx.dlq_codec, reason=reason, error_type=error_type, source_topic=raw.topic,
        partition=raw.partition, offset=raw.offset, key=raw.key, value=raw.value, now_ms=now_ms)
    dead.append(DeadLetter(raw.key, value, headers, error_type))


def decode_and_validate(ctx: ScoringContext, batch: Sequence[RawRecord], now_ms: int,
                        dead: list[DeadLetter]) -> tuple[list[dict[str, Any]], list[bytes], list[int]]:
    """Return the valid telemetry records of ``batch``, their raw values and their partitions;
    append the others to ``dead``. Decodes the whole batch, then validates it (two passes, so that
    each stage is timed once per batch on ``ctx.clock``); dead letters keep the batch's order."""
    decode = ctx.telemetry_codec.decode
    # (record, its raw form, and for one that did not decode: why, and the dead-letter class)
    decoded: list[tuple[RawRecord, dict[str, Any] | None, str, str]] = []
    for raw in batch:
        if raw.value is not None and len(raw.value) > MAX_RECORD_BYTES:  # not worth decoding
            decoded.append((raw, None, oversized(raw.value) or "", "oversized_record"))
            continue
        try:
            decoded.append((raw, decode(raw.value), "", ""))
        except DecodeError as exc:
            decoded.append((raw, None, str(exc), "decode_error"))
    ctx.clock.lap("decode")
    valid, raws, partitions = [], [], []
    duplicate = ctx.duplicates.problem
    for raw, record, error, kind in decoded:
        if record is None:
            _reject(ctx, dead, raw, error, kind, now_ms)
            continue
        problem = telemetry_problem(record, now_ms, ctx.max_future_ms, ctx.max_age_ms)
        if problem is not None:
            _reject(ctx, dead, raw, problem, "validation_error", now_ms)
            continue
        problem = key_problem(raw.key, record["battery_id"])
        if problem is not None:
            _reject(ctx, dead, raw, problem, "key_mismatch", now_ms)
            continue
        problem = duplicate(record["event_id"], raw.partition, raw.offset)
        if problem is not None:
            _reject(ctx, dead, raw, problem, "duplicate_event", now_ms)
            continue
        valid.append(record)
        raws.append(raw.value or b"")  # decoded, so not empty
        partitions.append(raw.partition)
    ctx.clock.lap("validate")
    return valid, raws, partitions


def _prediction(rec: dict[str, Any], row: tuple[float, ...], version: str,
                scored_at: int, fault_score: float = 0.0, fault_flag: bool = False) -> dict[str, Any]:
    """The full prediction record (used when the telemetry bytes cannot be reused)."""
    out = {k: rec[k] for k in CARRIED}
    out["rul_cycles"], out["rul_p10"], out["rul_p90"], out["failure_probability"], \
        out["anomaly_score"] = row
    out["model_version"] = version
    out["scored_at"] = scored_at
    out["fault_score"], out["fault_flag"] = fault_score, fault_flag
    return out


def _stateful_features(ctx: ScoringContext, records: list[dict[str, Any]], batteries: list[str],
                       partitions: list[int]) -> tuple[Any, np.ndarray, list[bool]]:
    """The features of ``records`` from their batteries' states (updated here, in order), each
    record's state after it, and whether the state took it (not a redelivery)."""
    from models.features import features_from_columns, record_columns, record_timestamps

    cols, mode = record_columns(records)
    ctx.clock.lap("features")
    taken: list[bool] = []
    states = ctx.estimator.update(batteries, partitions, cols, mode, record_timestamps(records), taken)
    ctx.clock.lap("state")
    return features_from_columns(cols, mode, states), states, taken


def score_batch(ctx: ScoringContext, batch: Sequence[RawRecord]) -> ScoredBatch:
    """Score one micro-batch; every record ends up as exactly one prediction or one dead letter."""
    clock = ctx.clock
    clock.start()
    now_ms = int(time.time() * 1000)
    dead: list[DeadLetter] = []
    records, raws, partitions = decode_and_validate(ctx, batch, now_ms, dead)
    if not records:
        return ScoredBatch(dead=dead)
    scorer = ctx.scorer  # one model for the whole batch, even if a reload lands meanwhile
    if ctx.estimator is None:
        features, states, taken = ctx.features(records), None, None
    else:
        batteries = [r["battery_id"] for r in records]
        features, states, taken = _stateful_features(ctx, records, batteries, partitions)
    clock.lap("features")
    scores = Scores.from_mapping(scorer.score(features))
    clock.lap("score")
    if states is None:
        fault, flag = np.zeros(len(records)), np.zeros(len(records), dtype=bool)
    else:  # the battery-level fault score and flag, carried by the prediction
        fault, flag = ctx.estimator.update_faults(batteries, partitions, scores.anomaly_score, states, taken)
        clock.lap("state")
    version = scorer.version
    scored_at = int(time.time() * 1000)
    tail = ctx.encoder.tail(version, scored_at)
    reuse, encode = ctx.encoder.reuse, ctx.prediction_codec.encode
    encoded = []
    for rec, raw, row, fault_score, fault_flag in zip(records, raws, scores.rows(), fault.tolist(),
                                                      flag.tolist(), strict=True):
        value = reuse(raw, rec, row, tail, fault_score, fault_flag)
        if value is None:  # written with an older schema: encode every field
            value = encode(_prediction(rec, row, version, scored_at, fault_score, fault_flag))
        encoded.append(value)
    result = ScoredBatch.of(records, scores, version, encoded, partitions)
    result.fault_score = fault
    if taken is not None:
        result.taken = np.asarray(taken, dtype=bool)
    result.dead = dead
    clock.lap("encode")  # the prediction values and the columns the alerts and metrics read
    return result


__all__ = ["CARRIED", "ScoringContext", "decode_and_validate", "score_batch"]
