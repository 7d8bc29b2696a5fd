"""Typed records and batches passed between the stages of a stream app.

* :class:`RawRecord` — one consumed Kafka record, bytes as they came (Faust's messages have the
  same fields, so a fetch can be handed over as it is).
* :class:`DeadLetter` — a record the pipeline rejected, ready for the dead-letter topic.
* :class:`Scores` and :class:`ScoredBatch` — what scoring one micro-batch yields: the valid
  telemetry records, one encoded prediction each, the dead letters, and the columns alerts and
  metrics read. Columns are named by :data:`Column`, so the contract between scoring, alert rules
  and metrics is written down (and checked by mypy) instead of being a dictionary's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

import numpy as np


class RawRecord(NamedTuple):
    """One consumed Kafka record."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


class DeadLetter(NamedTuple):
    """A rejected record: the dead-letter value (with the original bytes inside), its headers, the
    original key, and the class of failure (``decode_error``, ``validation_error``, …)."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    error_type: str


ScoreColumn = Literal["rul_p50", "rul_p10", "rul_p90", "failure_probability", "anomaly_score"]
"""Model outputs: RUL quantiles (equivalent full cycles), failure probability (0-1), anomaly
score (0-1)."""
TelemetryColumn = Literal["soc", "soh", "temperature", "timestamp", "fault_score"]
"""Per-reading columns alerts and metrics read: SoC and SoH (%), temperature (°C), event time (epoch
ms), and the battery's fault score after the reading (0-1, from the twin's state)."""
Column = ScoreColumn | TelemetryColumn
SCORE_COLUMNS: tuple[str, ...] = get_args(ScoreColumn)
TELEMETRY_COLUMNS: tuple[str, ...] = get_args(TelemetryColumn)


def _empty() -> np.ndarray:
    return np.empty(0, dtype=np.float64)


@dataclass
class Scores:
    """The models' outputs for a batch, one float64 array per output, aligned with the records."""

    rul_p50: np.ndarray = field(default_factory=_empty)
    rul_p10: np.ndarray = field(default_factory=_empty)
    rul_p90: np.ndarray = field(default_factory=_empty)
    failure_probability: np.ndarray = field(default_factory=_empty)
    anomaly_score: np.ndarray = field(default_factory=_empty)

    @classmethod
    def from_mapping(cls, scores: Mapping[str, Any]) -> Scores:
        """From a scorer's ``{name: array}`` output (see :meth:`models.scorer.Scorer.score`).

        Raises:
            KeyError: when an output is missing.
        """
        return cls(**{k: np.asarray(scores[k], dtype=np.float64) for k in SCORE_COLUMNS})

    def rows(self) -> zip[tuple[float, float, float, float, float]]:
        """Per record: (rul_p50, rul_p10, rul_p90, failure_probability, anomaly_score) as floats."""
        return zip(self.rul_p50.tolist(), self.rul_p10.tolist(), self.rul_p90.tolist(),
                   self.failure_probability.tolist(), self.anomaly_score.tolist(), strict=True)


@dataclass
class ScoredBatch:
    """What scoring one micro-batch produced.

    Every consumed record is in exactly one of ``records`` (scored; ``encoded[i]`` is its
    prediction) or ``dead``.

    Attributes:
        records: The valid telemetry records, decoded, in consumption order.
        encoded: The encoded prediction of each record.
        dead: The rejected records.
        scores: The models' outputs, aligned with ``records``.
        model_version: The model that scored the batch ("" when nothing was scored).
        soc: State of charge of each record, %.
        soh: State of health (BMS estimate), %.
        temperature: Highest pack temperature, °C.
        timestamp: Event time, epoch milliseconds (int64).
        partitions: The source partition of each record (partition state is kept per partition).
        fault_score: The battery's fault score after each record (0-1; all 0 without
            per-battery state).
        taken: Whether the battery's state took each record (bool). False for a record at or
            before the last one the state holds: a redelivery (the state, restored after a
            handover or a crash, can be ahead of the committed offsets, since it is made durable
            before the batch is acknowledged and offsets are committed later), a duplicate or a
            late reading. The alert rules skip those, as the state does. Empty = all taken
            (scoring without per-battery state).
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    scores: Scores = field(default_factory=Scores)
    model_version: str = ""
    soc: np.ndarray = field(default_factory=_empty)
    soh: np.ndarray = field(default_factory=_empty)
    temperature: np.ndarray = field(default_factory=_empty)
    timestamp: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    partitions: list[int] = field(default_factory=list)
    fault_score: np.ndarray = field(default_factory=_empty)
    taken: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def battery_ids(self) -> list[str]:
        """The battery id of each record."""
        return [r["battery_id"] for r in self.records]

    def column(self, name: Column) -> np.ndarray:
        """One column by name: a model output or a telemetry column (see :data:`Column`)."""
        if name in SCORE_COLUMNS:
            return getattr(self.scores, name)  # type: ignore[no-any-return]
        if name in TELEMETRY_COLUMNS:
            return getattr(self, name)  # type: ignore[no-any-return]
        raise KeyError(f"no column {name!r}; columns: {', '.join(SCORE_COLUMNS + TELEMETRY_COLUMNS)}")

    @classmethod
    def of(cls, records: list[dict[str, Any]], scores: Scores, model_version: str = "",
           encoded: list[bytes] | None = None, partitions: list[int] | None = None) -> ScoredBatch:
        """A batch of ``records`` with their ``scores``; the telemetry columns are read from the
        records. ``partitions`` defaults to partition 0 for every record."""
        n = len(records)
        return cls(
            records=records, encoded=encoded or [], scores=scores, model_version=model_version,
            partitions=partitions if partitions is not None else [0] * n,
            soc=np.fromiter((r["soc"] for r in records), np.float64, n),
            soh=np.fromiter((r["soh"] for r in records), np.float64, n),
            temperature=np.fromiter((r["temperature"] for r in records), np.float64, n),
            timestamp=np.fromiter((r["timestamp"] for r in records), np.int64, n),
            fault_score=np.zeros(n),
        )


__all__ = [
    "SCORE_COLUMNS", "TELEMETRY_COLUMNS", "Column", "DeadLetter", "RawRecord", "ScoreColumn",
    "ScoredBatch", "Scores", "TelemetryColumn",
]
