"""Online accuracy (the ``evtwin sink --kind accuracy`` job's table ``ev_accuracy``): the fleet's
figures over the window, its buckets over a range, the least accurate packs; and one pack's figures
for its twin page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from streams.api.schemas import (
    AccuracyFigures,
    AccuracyOverview,
    AccuracyPoint,
    BatteryAccuracy,
    BatteryAccuracyItem,
)
from streams.state.rolling import Sums

router = APIRouter(prefix="/api")
SERIES_LIMIT = 2000
"""Buckets of the fleet series at most (a week of 5-minute buckets)."""


def figures(acc: dict[str, Any] | None) -> AccuracyFigures:
    """The figures of summed ``ev_accuracy`` rows (``pairs``, ``abs_error``, ``in_band``,
    ``detections``, ``delay_s``, ``failure_pairs``, ``failure_probability``, ``failure_observed``,
    ``failure_sq_error``): a mean of the sums, never a mean of means."""
    if not acc or not acc.get("pairs"):
        return AccuracyFigures()
    s = Sums(int(acc["pairs"]), float(acc["abs_error"]), int(acc["in_band"]), int(acc["detections"]),
             float(acc["delay_s"]), int(acc["failure_pairs"]), float(acc["failure_probability"]),
             int(acc["failure_observed"]), float(acc["failure_sq_error"]))  # the accuracy job's sums
    return AccuracyFigures(pairs=s.pairs, rul_mae_cycles=s.mae, rul_band_coverage=s.coverage,
                           fault_detections=s.detections, fault_detection_delay_s_mean=s.delay_mean_s,
                           failure_pairs=s.failure_pairs, failure_mean_probability=s.failure_mean_probability,
                           failure_observed_rate=s.failure_observed_rate, failure_brier=s.failure_brier,
                           failure_baseline_brier=s.failure_baseline_brier)


def battery_accuracy(row: dict[str, Any], window_s: int) -> BatteryAccuracy | None:
    """A pack's :class:`BatteryAccuracy` from its twin row (``acc`` and ``f_*`` columns); ``None``
    when the job never saw a pair or a fault of it."""
    fig = figures(row.get("acc"))
    if not fig.pairs and row.get("f_fault") is None:
        return None
    return BatteryAccuracy(**fig.model_dump(), window_s=window_s, fault=row.get("f_fault"),
                           fault_onset=row.get("f_onset"), fault_detected_at=row.get("f_detected_at"),
                           fault_detection_delay_s=row.get("f_delay"))


@router.get("/accuracy", response_model=AccuracyOverview,
            summary="Online accuracy: the fleet over the window, its buckets, the least accurate packs")
async def accuracy(
    request: Request,
    from_: Annotated[datetime | None, Query(alias="from", description="Series start, ISO time.")] = None,
    to: Annotated[datetime | None, Query(description="Series end (exclusive), ISO time.")] = None,
    limit: Annotated[int, Query(ge=0, le=1000, description="Packs listed, worst first.")] = 20,
) -> Response:
    st = request.app.state.api
    window_s, bucket_s = st.settings.accuracy_window_s, st.settings.accuracy_bucket_s
    end = _utc(to) if to is not None else datetime.now(UTC)
    start = _utc(from_) if from_ is not None else end - timedelta(hours=24)
    if start >= end:
        raise HTTPException(422, [{"loc": ["query", "from"], "msg": "from must be before to",
                                   "type": "value_error"}])
    fleet = await st.read.accuracy_fleet(window_s)
    series = await st.read.accuracy_series(start, end, SERIES_LIMIT)
    worst = await st.read.accuracy_batteries(window_s, limit) if limit else []
    body = AccuracyOverview(
        window_s=window_s, bucket_s=bucket_s, as_of=fleet["newest"], fleet=figures(fleet["acc"]),
        series=[AccuracyPoint(**r) for r in series],
        batteries=[BatteryAccuracyItem(battery_id=r["battery_id"], **figures(r["acc"]).model_dump())
                   for r in worst])
    return Response(body.model_dump_json(), media_type="application/json")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


__all__ = ["battery_accuracy", "figures", "router"]
