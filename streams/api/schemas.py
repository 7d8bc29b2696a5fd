"""The JSON shapes of the twin's HTTP API and WebSocket streams (pydantic models).

Field names are a contract with the web pages (``streams/api/web/``): add fields, never rename.
Times are ISO-8601 UTC strings; units as in ``schemas/*.avsc`` (soc/soh %, voltage V, current A with
discharge > 0, temperature °C, power kW, RUL in equivalent full cycles, probabilities 0-1).

Routes (all JSON unless said otherwise; ``/docs`` has the OpenAPI document):

=========================================  ========================================================
``GET  /api/health``                       :class:`Health` (503 with the same body when one is down)
``GET  /api/batteries``                    :class:`BatteryPage`; ``?limit=&offset=&sort=&order=
                                           &risk=low|medium|high&alert=open|none&soh_min=&soh_max=
                                           &q=<id prefix>``
``GET  /api/batteries/{id}``               :class:`BatteryTwin` (404 unknown battery), with its
                                           online accuracy (:class:`BatteryAccuracy`)
``GET  /api/batteries/{id}/history``       :class:`History`; ``?from=&to=&resolution=auto|raw|1m|
                                           5m|15m|1h`` (ISO times; default the last hour; ranges
                                           over 48 h read the hourly rollup)
``GET  /api/batteries/{id}/alerts``        :class:`AlertPage` (that battery's episodes, newest first)
``GET  /api/batteries/{id}/desired``       :class:`DesiredStateView`
``PUT  /api/batteries/{id}/desired``       body :class:`DesiredState` -> :class:`DesiredStateView`
                                           (API key: header ``X-API-Key`` or ``Authorization:
                                           Bearer``; 401 without, 429 over the rate limit)
``POST /api/battery/configure``            body :class:`ConfigureRequest` -> :class:`DesiredStateView`
                                           (the seed's path; same effect as the PUT)
``GET  /api/fleet/summary``                :class:`FleetSummary`
``GET  /api/accuracy``                     :class:`AccuracyOverview`; ``?from=&to=&limit=`` (fleet
                                           figures of the window, fleet buckets, least accurate packs)
``GET  /api/alerts``                       :class:`AlertPage`; ``?status=open|resolved|all&battery=
                                           &rule=&severity=&limit=&offset=``
``GET  /api/telemetry/latest``             :class:`TelemetryLatest` (seed path; ``?battery=&limit=``)
``GET  /api/predictions/current``          :class:`PredictionsCurrent` (seed path; ``?battery=&limit=``)
``GET  /api/export``                       ``?battery=&from=&to=&format=csv|parquet``: streamed file
``GET  /api/topics``                       :class:`TopicsOverview` (topics, partitions, end offsets,
                                           consumer groups and their lag)
``GET  /api/topics/{name}/records``        :class:`TopicRecords`; ``?limit=20&partition=`` (the last
                                           records, Avro decoded to JSON)
``GET  /``                                 the web pages (``streams/api/web/index.html``)
=========================================  ========================================================

WebSockets (server -> client JSON text frames, one message per frame):

* ``/ws/fleet``: every prediction and alert of the fleet; ``/ws/batteries/{id}``: only that battery's.
* First message ``{"type": "hello", "battery_id": <id or null>, "server_time": <iso>}``
  (:class:`WsHello`).
* ``{"type": "predictions", "data": [LivePrediction, ...]}`` (:class:`WsPredictions`): the
  predictions of the last window (``EVTWIN_API_WS_BATCH_MS``, default 50 ms), oldest first; one
  frame per window with at least one prediction (the fleet page may see several per battery: keep
  the last). ``{"type": "alert", "data": AlertOut}`` (:class:`WsAlert`) for each OPENED/RESOLVED
  record, ``{"type": "reported", "data": DesiredStateView}`` when a pack reports a newly applied
  desired state.
* A client whose queue (``EVTWIN_API_WS_QUEUE`` frames) overflows, or that takes longer than
  ``EVTWIN_API_WS_SEND_TIMEOUT_S`` to take one frame, is closed with code 4008 ("too slow"); an
  unknown battery is closed with 4404. Clients send nothing (anything sent is ignored).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Risk = Literal["low", "medium", "high"]
"""Risk band of a pack from its failure probability (see :func:`risk_band`)."""
UsageProfile = Literal["private", "commuter", "commercial"]
Climate = Literal["cold", "temperate", "hot"]
FaultName = Literal["none", "internal_short", "cooling_failure", "weak_cell", "sensor_drift",
                    "sensor_dropout"]
Resolution = Literal["auto", "raw", "1m", "5m", "15m", "1h"]

RISK_MEDIUM = 0.3
"""Failure probability from which a pack is ``medium`` risk."""
RISK_HIGH = 0.7
"""Failure probability from which a pack is ``high`` risk (the failure_risk alert's default)."""


def risk_band(failure_probability: float | None) -> Risk | None:
    """``low`` below 0.3, ``medium`` below 0.7, else ``high``; ``None`` for no prediction."""
    if failure_probability is None:
        return None
    if failure_probability >= RISK_HIGH:
        return "high"
    return "medium" if failure_probability >= RISK_MEDIUM else "low"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- Readings, predictions, alerts ----------------------------------------------------------


class ReportedState(_Model):
    """The pack's last reading (the twin's reported physical state)."""

    time: datetime = Field(description="Event time of the reading, UTC.")
    soc: float | None = Field(None, description="State of charge, %.")
    soh: float | None = Field(None, description="State of health (BMS estimate), %.")
    voltage: float | None = Field(None, description="Pack terminal voltage, V.")
    current: float | None = Field(None, description="Pack current, A; > 0 discharge.")
    temperature: float | None = Field(None, description="Highest pack temperature, °C.")
    charge_cycles: int | None = Field(None, description="Equivalent full cycles so far.")
    power_consumption: float | None = Field(None, description="Power at the terminals, kW.")


class Prediction(_Model):
    """The twin's latest estimate for a pack."""

    time: datetime = Field(description="Event time of the reading the prediction is for, UTC.")
    scored_at: datetime | None = Field(None, description="When it was scored, UTC.")
    rul_cycles: float | None = Field(None, description="Remaining useful life, P50, cycles.")
    rul_p10: float | None = Field(None, description="RUL band, 10th percentile, cycles.")
    rul_p90: float | None = Field(None, description="RUL band, 90th percentile, cycles.")
    failure_probability: float | None = Field(None, description="Failure within horizon, 0-1.")
    anomaly_score: float | None = Field(None, description="Anomaly score of the reading, 0-1.")
    fault_score: float | None = Field(None, description="The pack's persistent fault score, 0-1 (a "
                                      "moving average of the anomaly score over service days).")
    fault_flag: bool | None = Field(None, description="The pack is flagged faulty (hysteresis on the "
                                    "fault score; null: scored before fault detection was recorded).")
    risk: Risk | None = Field(None, description="Risk band from the failure probability.")
    model_version: str | None = None


class AlertOut(_Model):
    """One alert episode (row of ``ev_alerts``)."""

    alert_id: str
    battery_id: str
    rule: str = Field(description="low_soc, over_temperature, failure_risk, low_rul, anomaly, battery_fault, ...")
    severity: str = Field(description="INFO, WARNING or CRITICAL.")
    status: str = Field(description="OPENED (open) or RESOLVED.")
    value: float | None = Field(None, description="Value that opened it, unit of the rule.")
    threshold: float | None = None
    message: str | None = None
    opened_at: datetime
    resolved_at: datetime | None = None


class AlertPage(_Model):
    """A page of alert episodes, newest first."""

    items: list[AlertOut]
    limit: int
    offset: int
    total: int = Field(description="Episodes matching the filter.")


# --- Desired state (commands) ----------------------------------------------------------------


class DesiredState(_Model):
    """What the operator wants a pack to do; ``null`` = leave as simulated.

    Applied by the simulator: the driver profile, the vehicle's climate, the AC charge target
    (``max_soc``, %), the share of DC fast charges (0-1) and an injected fault (``none`` clears an
    injected one).
    """

    usage_profile: UsageProfile | None = None
    climate: Climate | None = None
    max_soc: float | None = Field(None, ge=50.0, le=100.0, description="AC charge target, %.")
    dc_share: float | None = Field(None, ge=0.0, le=1.0, description="Share of DC fast charges.")
    fault: FaultName | None = Field(None, description="Fault to inject for testing.")


class ConfigureRequest(DesiredState):
    """Body of ``POST /api/battery/configure`` (the seed's path): the battery and its desired
    state in one object."""

    battery_id: str = Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")


class DesiredStateView(_Model):
    """Desired vs reported state of one pack, as Eclipse Ditto shows a twin's."""

    battery_id: str
    desired: DesiredState | None = Field(None, description="Null: never configured.")
    desired_version: int | None = Field(None, description="Version of the desired state (grows).")
    requested_at: datetime | None = Field(None, description="When it was last written, UTC.")
    reported: DesiredState | None = Field(None, description="What the simulator applied.")
    reported_version: int | None = Field(None, description="Desired version it applied.")
    reported_at: datetime | None = Field(None, description="When it reported it, UTC.")
    converged: bool = Field(False, description="Reported equals desired (same version).")
    converged_at: datetime | None = Field(None, description="When they became equal, UTC.")


# --- Batteries ---------------------------------------------------------------------------


class BatteryListItem(_Model):
    """One pack in the fleet list: latest reading, prediction and open-alert count."""

    battery_id: str
    time: datetime
    soc: float | None = None
    soh: float | None = None
    voltage: float | None = None
    current: float | None = None
    temperature: float | None = None
    charge_cycles: int | None = None
    rul_cycles: float | None = None
    rul_p10: float | None = None
    rul_p90: float | None = None
    failure_probability: float | None = None
    anomaly_score: float | None = None
    fault_score: float | None = None
    fault_flag: bool | None = None
    risk: Risk | None = None
    open_alerts: int = 0
    model_version: str | None = None


class BatteryPage(_Model):
    """A page of packs."""

    items: list[BatteryListItem]
    total: int = Field(description="Packs matching the filter.")
    limit: int
    offset: int
    sort: str
    order: Literal["asc", "desc"]


class AccuracyFigures(_Model):
    """Online accuracy of a set of predictions joined with the simulator's ground truth."""

    pairs: int = Field(0, description="Predictions joined with their ground truth (count).")
    rul_mae_cycles: float | None = Field(None, description="Mean absolute RUL error, cycles.")
    rul_band_coverage: float | None = Field(
        None, description="Fraction (0-1) of true RULs inside the predicted P10-P90 band (aim: 0.8).")
    fault_detections: int = Field(0, description="Fault episodes first flagged (count).")
    fault_detection_delay_s_mean: float | None = Field(
        None, description="Mean onset-to-flag delay of those episodes, seconds of event time.")
    failure_pairs: int = Field(0, description="Pairs with both a failure probability and a failure label (count).")
    failure_mean_probability: float | None = Field(
        None, description="Mean predicted probability (0-1) of failure within the horizon.")
    failure_observed_rate: float | None = Field(
        None, description="Share (0-1) of those readings whose truth says failure within the horizon; "
        "a calibrated probability's mean is close to it.")
    failure_brier: float | None = Field(
        None, description="Brier score of the failure probability against the label (0-1, lower is better).")
    failure_baseline_brier: float | None = Field(
        None, description="Brier score of always predicting the observed rate, rate * (1 - rate): "
        "an informative probability scores below it.")


class AccuracyPoint(AccuracyFigures):
    """The fleet's figures of one bucket of event time."""

    bucket: datetime = Field(description="Start of the bucket, UTC.")


class BatteryAccuracyItem(AccuracyFigures):
    """One pack's figures over the window."""

    battery_id: str


class BatteryAccuracy(AccuracyFigures):
    """One pack's figures over the window, and its fault episode as the ground truth tells it."""

    window_s: int = Field(description="The window: this many seconds of buckets up to the fleet's newest.")
    fault: str | None = Field(None, description="Fault of its newest episode change (none: cleared); "
                              "null: never had one.")
    fault_onset: datetime | None = Field(None, description="First truth of its current or last fault, UTC.")
    fault_detected_at: datetime | None = Field(None, description="Its first flagged prediction, UTC.")
    fault_detection_delay_s: float | None = Field(None, description="Onset to flag, s of event time.")


class AccuracyOverview(_Model):
    """``GET /api/accuracy``: the online-accuracy job's figures (table ``ev_accuracy``)."""

    window_s: int = Field(description="The window of ``fleet`` and ``batteries``: this many seconds "
                          "of buckets up to the fleet's newest (EVTWIN_ACCURACY_WINDOW_S).")
    bucket_s: int = Field(description="Width of one bucket (EVTWIN_ACCURACY_BUCKET_S), s.")
    as_of: datetime | None = Field(None, description="Start of the fleet's newest bucket, UTC; null: "
                                   "no pair yet.")
    fleet: AccuracyFigures
    series: list[AccuracyPoint] = Field(description="The fleet's buckets between from and to, oldest first.")
    batteries: list[BatteryAccuracyItem] = Field(
        description="The packs with the largest RUL error over the window, worst first.")


class BatteryTwin(_Model):
    """The digital twin of one pack."""

    battery_id: str
    reported: ReportedState | None
    prediction: Prediction | None
    open_alerts: list[AlertOut]
    desired: DesiredStateView
    accuracy: BatteryAccuracy | None = Field(
        None, description="Online accuracy of its predictions; null without ground truth for it.")


class HistoryPoint(_Model):
    """One point of a pack's history: a reading, or the average of a bucket."""

    time: datetime = Field(description="Reading time, or start of the bucket, UTC.")
    samples: int = Field(1, description="Readings in the bucket.")
    soc: float | None = None
    soh: float | None = None
    voltage: float | None = None
    current: float | None = None
    temperature: float | None = None
    temperature_max: float | None = None
    charge_cycles: int | None = None
    rul_cycles: float | None = None
    rul_p10: float | None = None
    rul_p90: float | None = None
    failure_probability: float | None = None
    anomaly_score: float | None = None
    fault_score: float | None = Field(None, description="Highest fault score of the bucket (null from the hourly rollup).")


class History(_Model):
    """A pack's history between two times, downsampled server-side."""

    battery_id: str
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    resolution: Resolution = Field(description="The resolution used (auto resolved).")
    source: Literal["ev_telemetry", "ev_telemetry_hourly"]
    points: list[HistoryPoint]

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- Fleet -------------------------------------------------------------------------------


class HistogramBin(_Model):
    """Packs whose value lies in ``[lo, hi)``."""

    lo: float
    hi: float
    count: int


class FleetPoint(_Model):
    """One pack in the comparative charts (SoH vs age in cycles, RUL)."""

    battery_id: str
    charge_cycles: int | None
    soh: float | None
    rul_cycles: float | None
    risk: Risk | None


class FleetSummary(_Model):
    """Distributions and counts over the fleet's latest state."""

    batteries: int
    as_of: datetime | None = Field(None, description="Newest reading in the fleet, UTC.")
    by_risk: dict[str, int] = Field(description="low/medium/high/unknown -> packs.")
    open_alerts: int
    open_alerts_by_rule: dict[str, int]
    open_alerts_by_severity: dict[str, int]
    fault_flagged: int = Field(0, description="Packs flagged faulty now (battery-level fault detection).")
    soh_avg: float | None = None
    rul_avg: float | None = None
    soh_histogram: list[HistogramBin]
    rul_histogram: list[HistogramBin]
    risk_histogram: list[HistogramBin] = Field(description="Failure probability, 10 bins of 0.1.")
    points: list[FleetPoint] = Field(description="Every pack, for the scatter charts.")


# --- Seed paths ----------------------------------------------------------------------------


class TelemetryRow(ReportedState):
    """Latest reading of one pack (seed path ``/api/telemetry/latest``)."""

    battery_id: str


class TelemetryLatest(_Model):
    items: list[TelemetryRow]
    count: int


class PredictionRow(Prediction):
    """Current prediction of one pack (seed path ``/api/predictions/current``)."""

    battery_id: str


class PredictionsCurrent(_Model):
    items: list[PredictionRow]
    count: int


# --- Health --------------------------------------------------------------------------------


class DependencyHealth(_Model):
    ok: bool
    detail: str = ""
    latency_ms: float | None = None


class Health(_Model):
    """Each dependency; ``status`` is ``ok`` only when all are."""

    status: Literal["ok", "degraded"]
    dependencies: dict[str, DependencyHealth] = Field(
        description="broker, database, mqtt (when configured), model.")
    model_version: str | None = None
    ws_clients: int = 0
    uptime_s: float = 0.0


# --- Topics page ---------------------------------------------------------------------------


class PartitionInfo(_Model):
    partition: int
    low: int = Field(description="First offset still stored.")
    high: int = Field(description="End offset (next offset to be written).")


class TopicInfo(_Model):
    name: str
    partitions: list[PartitionInfo]
    messages: int = Field(description="Sum of high - low over the partitions.")
    schema_name: str | None = Field(None, description="Avro schema of its values, if ours.")


class GroupLag(_Model):
    group: str
    topic: str
    lag: int = Field(description="Sum over partitions of end offset - committed offset.")
    partitions: dict[str, int] = Field(description="partition -> lag.")


class TopicsOverview(_Model):
    topics: list[TopicInfo]
    groups: list[GroupLag]


class TopicRecord(_Model):
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    value: Any = Field(description="The record decoded to JSON, or {'error': ...}.")


class TopicRecords(_Model):
    topic: str
    records: list[TopicRecord]


# --- WebSocket messages ----------------------------------------------------------------------


class LivePrediction(PredictionRow):
    """A prediction as it streams (the reading's values with the estimate); measurements rounded to
    ``streams.api.hub.LIVE_DECIMALS`` places (the REST API has them at full precision)."""

    soc: float | None = None
    soh: float | None = None
    voltage: float | None = None
    current: float | None = None
    temperature: float | None = None
    charge_cycles: int | None = None
    power_consumption: float | None = None
    fault_score: float | None = Field(None, description="The battery's persistent fault score, 0-1.")
    fault_flag: bool | None = Field(None, description="The twin flags the battery faulty (hysteresis).")


class WsHello(_Model):
    type: Literal["hello"] = "hello"
    battery_id: str | None
    server_time: datetime


class WsPredictions(_Model):
    type: Literal["predictions"] = "predictions"
    data: list[LivePrediction]


class WsReported(_Model):
    type: Literal["reported"] = "reported"
    data: DesiredStateView


class WsAlert(_Model):
    type: Literal["alert"] = "alert"
    data: AlertOut


class ErrorOut(_Model):
    detail: Any


__all__ = [
    "AlertOut", "AlertPage", "BatteryListItem", "BatteryPage", "BatteryTwin", "Climate",
    "ConfigureRequest", "DependencyHealth", "DesiredState", "DesiredStateView", "ErrorOut",
    "FaultName", "FleetPoint", "FleetSummary", "GroupLag", "Health", "HistogramBin", "History",
    "HistoryPoint", "LivePrediction", "PartitionInfo", "Prediction", "PredictionRow",
    "PredictionsCurrent", "RISK_HIGH", "RISK_MEDIUM", "ReportedState", "Resolution", "Risk",
    "TelemetryLatest", "TelemetryRow", "TopicInfo", "TopicRecord", "TopicRecords",
    "TopicsOverview", "UsageProfile", "WsAlert", "WsHello", "WsPredictions", "WsReported",
    "risk_band",
]
