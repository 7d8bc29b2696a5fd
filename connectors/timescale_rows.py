"""How decoded Avro records become rows of the sink tables, and the SQL that writes them.

Input records carry the field names of ``schemas/prediction.avsc`` and ``schemas/alert.avsc``;
timestamps are ``int`` epoch milliseconds, UTC (``datetime`` objects are accepted too). Times are
converted to ``timestamptz`` inside PostgreSQL (``TIMESTAMPTZ 'epoch' + ms * 1 ms``, exact to the
millisecond), which saves building a ``datetime`` per row in Python.

Every statement is idempotent: telemetry ``ON CONFLICT DO NOTHING``; ``battery_state`` only moves to
a strictly newer ``time``; an alert row changes once, from OPENED to RESOLVED.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from schemas.fields import field_defaults

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Prediction fields in staging order, and the table columns they land in.
PREDICTION_FIELDS = (
    "timestamp", "battery_id", "soc", "soh", "voltage", "current", "temperature", "charge_cycles",
    "power_consumption", "rul_cycles", "failure_probability", "rul_p10", "rul_p90",
    "anomaly_score", "fault_score", "fault_flag", "model_version", "event_id", "scored_at", "seq",
)
#: Positions in a staging tuple of the scoring time and the sequence number (always last).
_SCORED = PREDICTION_FIELDS.index("scored_at")
_SEQ = PREDICTION_FIELDS.index("seq")
#: Defaults of the fields a record may lack (the schema's: older versions resolve to them).
_DEFAULTS = field_defaults("prediction")
VALUE_COLUMNS = (
    "soc", "soh", "voltage", "current", "temperature", "charge_cycles", "power_consumption",
    "rul_prediction", "failure_probability", "rul_p10", "rul_p90", "anomaly_score",
    "fault_score", "fault_flag", "model_version", "event_id", "scored_at",
)
TABLE_COLUMNS = ("time", "battery_id", *VALUE_COLUMNS)
_STAGE_TYPES = (
    ("ts_ms", "int8"), ("battery_id", "text"), ("soc", "float8"), ("soh", "float8"),
    ("voltage", "float8"), ("current", "float8"), ("temperature", "float8"),
    ("charge_cycles", "int4"), ("power_consumption", "float8"), ("rul_prediction", "float8"),
    ("failure_probability", "float8"), ("rul_p10", "float8"), ("rul_p90", "float8"),
    ("anomaly_score", "float8"), ("fault_score", "float8"), ("fault_flag", "bool"),
    ("model_version", "text"), ("event_id", "text"),
    ("scored_ms", "int8"), ("seq", "int8"),
)
STAGE_TABLE = "evtwin_stage_predictions"
STAGE_PG_TYPES = [t for _, t in _STAGE_TYPES]

_COLS = ", ".join(TABLE_COLUMNS)
_MS = "TIMESTAMPTZ 'epoch' + {} * INTERVAL '1 millisecond'"
_STAGE_SELECT = ", ".join(
    [_MS.format("ts_ms"), "battery_id",
     *(_MS.format("scored_ms") if c == "scored_at" else c for c in VALUE_COLUMNS)]
)
_STATE_UPDATE = (
    " ON CONFLICT (battery_id) DO UPDATE SET time = EXCLUDED.time, "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in VALUE_COLUMNS)
    + ", updated_at = now() WHERE battery_state.time < EXCLUDED.time"
)

CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} ("
    + ", ".join(f"{name} {pg}" for name, pg in _STAGE_TYPES)
    + ") ON COMMIT DELETE ROWS"
)
COPY_STAGE = f"COPY {STAGE_TABLE} ({', '.join(n for n, _ in _STAGE_TYPES)}) FROM STDIN (FORMAT BINARY)"
INSERT_FROM_STAGE = (
    f"INSERT INTO ev_telemetry ({_COLS}) SELECT {_STAGE_SELECT} FROM {STAGE_TABLE} "
    "ON CONFLICT DO NOTHING"
)
STATE_FROM_STAGE = (
    f"INSERT INTO battery_state ({_COLS}) SELECT DISTINCT ON (battery_id) {_STAGE_SELECT} "
    f"FROM {STAGE_TABLE} ORDER BY battery_id, ts_ms DESC, seq DESC" + _STATE_UPDATE
)

#: The hourly rollup's sums on plain PostgreSQL (migration 0008), kept with every batch.
ROLLUP_SUMS = "ev_telemetry_hourly_sums"
_ROLLUP_AGGREGATES = (
    ("samples", "count(*)", "+"), ("soc_sum", "sum(soc)", "+"), ("soc_min", "min(soc)", "least"),
    ("soc_max", "max(soc)", "greatest"), ("soh_sum", "sum(soh)", "+"), ("soh_min", "min(soh)", "least"),
    ("voltage_sum", "sum(voltage)", "+"), ("current_sum", "sum(current)", "+"),
    ("temperature_sum", "sum(temperature)", "+"), ("temperature_max", "max(temperature)", "greatest"),
    ("charge_cycles_max", "max(charge_cycles)", "greatest"), ("power_sum", "sum(power_consumption)", "+"),
    ("rul_sum", "sum(rul_prediction)", "+"), ("rul_p10_sum", "sum(rul_p10)", "+"),
    ("rul_p90_sum", "sum(rul_p90)", "+"), ("failure_probability_sum", "sum(failure_probability)", "+"),
    ("failure_probability_max", "max(failure_probability)", "greatest"),
    ("anomaly_score_max", "max(anomaly_score)", "greatest"),
)


def with_rollup(insert: str) -> str:
    """``insert`` (an ``INSERT INTO ev_telemetry … ON CONFLICT DO NOTHING``) that also adds the rows
    it inserted — only those: a replayed reading adds nothing — to the hourly sums, in the same
    statement; it returns one row, the number of readings inserted."""
    merge = ", ".join(f"{c} = h.{c} + EXCLUDED.{c}" if op == "+" else f"{c} = {op}(h.{c}, EXCLUDED.{c})"
                      for c, _, op in _ROLLUP_AGGREGATES)
    return (
        f"WITH ins AS ({insert} RETURNING *), "
        f"rollup AS (INSERT INTO {ROLLUP_SUMS} AS h (bucket, battery_id, "
        + ", ".join(c for c, _, _ in _ROLLUP_AGGREGATES) + ") "
        "SELECT date_bin(INTERVAL '1 hour', time, TIMESTAMPTZ '2000-01-01 00:00:00+00'), battery_id, "
        + ", ".join(agg for _, agg, _ in _ROLLUP_AGGREGATES)
        + f" FROM ins GROUP BY 1, 2 ORDER BY 1, 2"  # one lock order for concurrent writers
        f" ON CONFLICT (bucket, battery_id) DO UPDATE SET {merge}) "
        "SELECT count(*) FROM ins"
    )


INSERT_FROM_STAGE_ROLLUP = with_rollup(INSERT_FROM_STAGE)
_VALUES = ", ".join(
    [_MS.format("%s::int8"), "%s",
     *(_MS.format("%s::int8") if c == "scored_at" else "%s" for c in VALUE_COLUMNS)]
)
INSERT_VALUES = f"INSERT INTO ev_telemetry ({_COLS}) VALUES ({_VALUES}) ON CONFLICT DO NOTHING"
INSERT_VALUES_ROLLUP = with_rollup(INSERT_VALUES)
STATE_VALUES = f"INSERT INTO battery_state ({_COLS}) VALUES ({_VALUES})" + _STATE_UPDATE

UPSERT_ALERT = (
    "INSERT INTO ev_alerts (alert_id, battery_id, rule, severity, status, value, threshold, "
    "message, event_id, opened_at, resolved_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (alert_id) DO UPDATE SET status = EXCLUDED.status, "
    "resolved_at = EXCLUDED.resolved_at, updated_at = now() "
    "WHERE ev_alerts.status <> 'RESOLVED' AND EXCLUDED.status = 'RESOLVED'"
)

INSERT_GROUND_TRUTH = (
    "INSERT INTO ev_ground_truth (time, battery_id, event_id, true_soh, true_rul_cycles, "
    f"failure_within_horizon, fault) VALUES ({_MS.format('%s::int8')}, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)

_get_prediction = itemgetter(*PREDICTION_FIELDS)


def millis(value: Any) -> int:
    """Epoch milliseconds from an ``int`` (returned as is) or an aware ``datetime``."""
    if isinstance(value, datetime):
        return (value - EPOCH) // timedelta(milliseconds=1)
    return int(value)


def prediction_tuples(rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Prediction records as tuples in :data:`PREDICTION_FIELDS` order (staging order).

    Raises:
        KeyError: a record lacks a field.
    """
    rows = rows if isinstance(rows, Sequence) else list(rows)
    try:
        out = [_get_prediction(r) for r in rows]
    except KeyError:  # fields with an Avro default: hand-made records may lack them
        out = [tuple(r[f] if f in r or f not in _DEFAULTS else _DEFAULTS[f] for f in PREDICTION_FIELDS)
               for r in rows]
    if out and not (type(out[0][0]) is int and type(out[0][_SCORED]) is int):
        out = [(millis(t[0]), *t[1:_SCORED], millis(t[_SCORED]), *t[_SCORED + 1:]) for t in out]
    return out


def latest_per_battery(tuples: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The newest tuple of each battery (by event time, then sequence number)."""
    latest: dict[str, tuple[Any, ...]] = {}
    for t in tuples:
        seen = latest.get(t[1])
        if seen is None or (t[0], t[_SEQ]) >= (seen[0], seen[_SEQ]):
            latest[t[1]] = t
    return list(latest.values())


def without_seq(t: tuple[Any, ...]) -> tuple[Any, ...]:
    """A staging tuple as parameters of :data:`INSERT_VALUES` / :data:`STATE_VALUES`."""
    return t[:_SEQ]


def _when(ms: Any) -> datetime | None:
    return None if ms is None else EPOCH + timedelta(milliseconds=millis(ms))


def alert_params(rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Parameters of :data:`UPSERT_ALERT`, one per episode: the records of one ``alert_id`` in a
    batch are merged (OPENED fields, then RESOLVED status and ``resolved_at`` if any resolved)."""
    episodes: dict[str, dict[str, Any]] = {}
    for row in rows:
        merged = episodes.get(row["alert_id"])
        if merged is None:
            episodes[row["alert_id"]] = dict(row)
        elif row["status"] == "RESOLVED":
            merged.update(status="RESOLVED", resolved_at=row.get("resolved_at"))
        elif merged["status"] == "RESOLVED":  # OPENED after RESOLVED in the batch: keep resolution
            merged.update({k: v for k, v in row.items() if k not in ("status", "resolved_at")})
    return [
        (a["alert_id"], a["battery_id"], a["rule"], a["severity"], a["status"], a["value"],
         a["threshold"], a["message"], a.get("event_id"), _when(a["opened_at"]),
         _when(a.get("resolved_at")))
        for a in episodes.values()
    ]


def ground_truth_params(rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    """Parameters of :data:`INSERT_GROUND_TRUTH` for decoded ``ground_truth`` records."""
    return [(millis(r["timestamp"]), r["battery_id"], r.get("event_id"), r["true_soh"],
             r["true_rul_cycles"], r["failure_within_horizon"], r.get("fault", "none")) for r in rows]


__all__ = [
    "COPY_STAGE", "CREATE_STAGE", "INSERT_FROM_STAGE", "INSERT_FROM_STAGE_ROLLUP", "INSERT_VALUES",
    "INSERT_VALUES_ROLLUP", "PREDICTION_FIELDS", "ROLLUP_SUMS",
    "INSERT_GROUND_TRUTH", "STAGE_PG_TYPES", "STAGE_TABLE", "STATE_FROM_STAGE", "STATE_VALUES",
    "TABLE_COLUMNS", "UPSERT_ALERT", "alert_params", "ground_truth_params", "latest_per_battery", "millis", "prediction_tuples",
    "without_seq",
]
