"""Read endpoints: batteries, one battery's twin and history, fleet summary, alerts, seed paths."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from streams.api.desired import view_of
from streams.api.readmodel import SORT_COLUMNS, choose_resolution
from streams.api.routes_accuracy import battery_accuracy
from streams.api.schemas import (
    AlertOut,
    AlertPage,
    BatteryListItem,
    BatteryPage,
    BatteryTwin,
    FleetPoint,
    FleetSummary,
    HistogramBin,
    History,
    HistoryPoint,
    Prediction,
    PredictionRow,
    PredictionsCurrent,
    ReportedState,
    Resolution,
    Risk,
    TelemetryLatest,
    TelemetryRow,
    risk_band,
)

router = APIRouter(prefix="/api")
BatteryId = Annotated[str, Path(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$",
                                description="Pack identifier, e.g. BATTERY_0001.")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown battery."}}


def state(request: Request) -> Any:
    return request.app.state.api


async def require_battery(request: Request, battery_id: str) -> dict[str, Any]:
    """The pack's ``battery_state`` row; 404 when the twin has never seen it."""
    row = await state(request).read.battery_state(battery_id)
    if row is None:
        raise HTTPException(404, f"unknown battery {battery_id!r}")
    return row


def _prediction(row: dict[str, Any]) -> Prediction:
    return Prediction(time=row["time"], scored_at=row["scored_at"], rul_cycles=row["rul_cycles"],
                      rul_p10=row["rul_p10"], rul_p90=row["rul_p90"],
                      failure_probability=row["failure_probability"],
                      anomaly_score=row["anomaly_score"], fault_score=row["fault_score"],
                      fault_flag=row["fault_flag"], risk=risk_band(row["failure_probability"]),
                      model_version=row["model_version"])


_REPORTED = ("time", "soc", "soh", "voltage", "current", "temperature", "charge_cycles",
             "power_consumption")


@router.get("/batteries", response_model=BatteryPage, summary="Packs, paged, filtered and sorted")
async def batteries(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    sort: Annotated[Literal[tuple(SORT_COLUMNS)], Query()] = "battery_id",  # type: ignore[valid-type]
    order: Literal["asc", "desc"] = "asc",
    risk: Risk | None = None,
    alert: Literal["open", "none"] | None = None,
    fault: Annotated[Literal["flagged", "clear"] | None,
                     Query(description="Packs the twin flags faulty now, or the others.")] = None,
    soh_min: Annotated[float | None, Query(ge=0, le=100)] = None,
    soh_max: Annotated[float | None, Query(ge=0, le=100)] = None,
    q: Annotated[str | None, Query(max_length=50, description="Battery id prefix.")] = None,
) -> Response:
    if soh_min is not None and soh_max is not None and soh_min > soh_max:
        raise HTTPException(422, [{"loc": ["query", "soh_min"], "msg": "soh_min is above soh_max",
                                   "type": "value_error"}])
    rows, total = await state(request).read.battery_page(
        limit=limit, offset=offset, sort=sort, order=order, risk=risk, alert=alert,
        soh_min=soh_min, soh_max=soh_max, prefix=q, fault=fault)
    return _json(BatteryPage(items=[BatteryListItem(**r) for r in rows], total=total, limit=limit,
                             offset=offset, sort=sort, order=order))


@router.get("/batteries/{battery_id}", response_model=BatteryTwin, responses=_NOT_FOUND,
            summary="The twin of one pack: reported state, prediction, open alerts, desired state")
async def battery(request: Request, battery_id: BatteryId) -> Response:
    window_s = state(request).settings.accuracy_window_s
    row = await state(request).read.battery_twin(battery_id, window_s)
    if row is None:
        raise HTTPException(404, f"unknown battery {battery_id!r}")
    desired = view_of(battery_id, {k[2:]: v for k, v in row.items() if k.startswith("d_")}
                      if row["d_present"] else None)
    twin = BatteryTwin(battery_id=battery_id,
                       reported=ReportedState(**{k: row[k] for k in _REPORTED}),
                       prediction=_prediction(row),
                       open_alerts=[AlertOut(**a) for a in row["alerts"]], desired=desired,
                       accuracy=battery_accuracy(row, window_s))
    return _json(twin)


def _json(model: Any) -> Response:
    """The model as JSON, serialised once (FastAPI would validate the returned model again)."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")


@router.get("/batteries/{battery_id}/history", response_model=History, responses=_NOT_FOUND,
            response_model_by_alias=True, summary="History of one pack, downsampled server-side")
async def history(
    request: Request, battery_id: BatteryId,
    from_: Annotated[datetime | None, Query(alias="from", description="Start, ISO time.")] = None,
    to: Annotated[datetime | None, Query(description="End (exclusive), ISO time.")] = None,
    resolution: Resolution = "auto",
) -> History:
    await require_battery(request, battery_id)
    end = _utc(to) if to is not None else datetime.now(UTC)
    start = _utc(from_) if from_ is not None else end - timedelta(hours=1)
    if start >= end:
        raise HTTPException(422, [{"loc": ["query", "from"], "msg": "from must be before to",
                                   "type": "value_error"}])
    if end - start > timedelta(days=400):
        raise HTTPException(422, [{"loc": ["query", "from"], "msg": "range over 400 days",
                                   "type": "value_error"}])
    used = choose_resolution(start, end, resolution)
    source, rows = await state(request).read.history(battery_id, start, end, used)
    return History(battery_id=battery_id, from_=start, to=end, resolution=used,  # type: ignore[arg-type]
                   source=source, points=[HistoryPoint(**r) for r in rows])


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get("/batteries/{battery_id}/alerts", response_model=AlertPage, responses=_NOT_FOUND,
            summary="Alert episodes of one pack, newest first")
async def battery_alerts(
    request: Request, battery_id: BatteryId,
    status: Literal["open", "resolved", "all"] = "all",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> AlertPage:
    await require_battery(request, battery_id)
    rows, total = await state(request).read.alerts(status=status, battery_id=battery_id, rule=None,
                                                   severity=None, limit=limit, offset=offset)
    return AlertPage(items=[AlertOut(**r) for r in rows], limit=limit, offset=offset, total=total)


@router.get("/alerts", response_model=AlertPage, summary="Alert episodes, newest first")
async def alerts(
    request: Request,
    status: Literal["open", "resolved", "all"] = "open",
    battery: Annotated[str | None, Query(max_length=50)] = None,
    rule: Annotated[str | None, Query(max_length=50)] = None,
    severity: Literal["INFO", "WARNING", "CRITICAL"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> AlertPage:
    rows, total = await state(request).read.alerts(status=status, battery_id=battery, rule=rule,
                                                   severity=severity, limit=limit, offset=offset)
    return AlertPage(items=[AlertOut(**r) for r in rows], limit=limit, offset=offset, total=total)


def _histogram(values: list[float], lo: float, hi: float, bins: int) -> list[HistogramBin]:
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    return [HistogramBin(lo=lo + i * width, hi=lo + (i + 1) * width, count=c)
            for i, c in enumerate(counts)]


SUMMARY_TTL_S = 1.0
"""How long one computed fleet summary is served (it reads every pack's row)."""


@router.get("/fleet/summary", response_model=FleetSummary,
            summary="Distributions of SoH, RUL and risk over the fleet; counts by state (at most "
            "1 s old)")
async def fleet_summary(request: Request) -> Response:
    """Computed at most once a second whatever the number of clients: concurrent requests share
    one computation (single flight), later ones within the second get its result."""
    st = state(request)
    cache = st.__dict__.setdefault("summary_cache", {"at": -1.0, "body": b"", "lock": asyncio.Lock()})
    if time.monotonic() - cache["at"] > SUMMARY_TTL_S:
        async with cache["lock"]:
            if time.monotonic() - cache["at"] > SUMMARY_TTL_S:
                cache["body"] = (await _compute_summary(st)).body
                cache["at"] = time.monotonic()
    return Response(cache["body"], media_type="application/json")


async def _compute_summary(st: Any) -> Response:
    rows = await st.read.fleet_rows()
    counts = await st.read.open_alert_counts()
    by_risk = {"low": 0, "medium": 0, "high": 0, "unknown": 0}
    points = []
    for r in rows:
        band = risk_band(r["failure_probability"])
        by_risk[band or "unknown"] += 1
        points.append(FleetPoint(battery_id=r["battery_id"], charge_cycles=r["charge_cycles"],
                                 soh=r["soh"], rul_cycles=r["rul_cycles"], risk=band))
    soh = [r["soh"] for r in rows if r["soh"] is not None]
    rul = [r["rul_cycles"] for r in rows if r["rul_cycles"] is not None]
    fp = [r["failure_probability"] for r in rows if r["failure_probability"] is not None]
    by_rule: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for c in counts:
        by_rule[c["rule"]] = by_rule.get(c["rule"], 0) + c["n"]
        by_severity[c["severity"]] = by_severity.get(c["severity"], 0) + c["n"]
    rul_hi = max(1000.0, (max(rul) // 500 + 1) * 500) if rul else 1000.0
    return _json(FleetSummary(
        batteries=len(rows), as_of=max((r["time"] for r in rows), default=None), by_risk=by_risk,
        open_alerts=sum(by_rule.values()), open_alerts_by_rule=by_rule,
        open_alerts_by_severity=by_severity, fault_flagged=sum(1 for r in rows if r["fault_flag"]),
        soh_avg=sum(soh) / len(soh) if soh else None, rul_avg=sum(rul) / len(rul) if rul else None,
        soh_histogram=_histogram(soh, 70.0, 100.0, 15), rul_histogram=_histogram(rul, 0.0, rul_hi, 20),
        risk_histogram=_histogram(fp, 0.0, 1.0, 10), points=points))


@router.get("/telemetry/latest", response_model=TelemetryLatest,
            summary="Latest reading of each pack (the seed's path)")
async def telemetry_latest(
    request: Request, battery: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> TelemetryLatest:
    rows = await state(request).read.latest_states(battery, limit)
    if battery is not None and not rows:
        raise HTTPException(404, f"unknown battery {battery!r}")
    items = [TelemetryRow(battery_id=r["battery_id"], **{k: r[k] for k in _REPORTED}) for r in rows]
    return TelemetryLatest(items=items, count=len(items))


@router.get("/predictions/current", response_model=PredictionsCurrent,
            summary="Current RUL and failure risk of each pack (the seed's path)")
async def predictions_current(
    request: Request, battery: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> PredictionsCurrent:
    rows = await state(request).read.latest_states(battery, limit)
    if battery is not None and not rows:
        raise HTTPException(404, f"unknown battery {battery!r}")
    items = [PredictionRow(battery_id=r["battery_id"], **_prediction(r).model_dump()) for r in rows]
    return PredictionsCurrent(items=items, count=len(items))
