"""Health, WebSocket streams, the topics page data and the streamed export."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse

from streams.api import export, topics_view
from streams.api.hub import CLOSE_UNKNOWN_BATTERY
from streams.api.routes_read import state
from streams.api.schemas import DependencyHealth, Health, TopicRecords, TopicsOverview

router = APIRouter()
CHECK_TIMEOUT_S = 2.0


async def _timed(check: Any) -> DependencyHealth:
    t0 = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check, CHECK_TIMEOUT_S)
        return DependencyHealth(ok=True, detail=detail or "",
                                latency_ms=round((time.perf_counter() - t0) * 1000, 2))
    except TimeoutError:
        return DependencyHealth(ok=False, detail=f"no answer within {CHECK_TIMEOUT_S:g} s")
    except Exception as exc:
        return DependencyHealth(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])


async def _database(st: Any) -> str:
    await st.read.ping()
    return "SELECT 1 answered"


async def _broker(st: Any) -> str:
    from connectors.kafka import list_topics

    topics = await asyncio.to_thread(list_topics, st.endpoints.kafka_bootstrap_servers,
                                     CHECK_TIMEOUT_S)
    return f"{len(topics)} topics"


async def _mqtt(url: str) -> str:
    from connectors.mqtt_publisher import mqtt_endpoint

    ep = mqtt_endpoint(url)  # mqtts: the TLS handshake and the broker's certificate are checked too
    _, writer = await asyncio.open_connection(ep.host, ep.port,
                                              ssl=ep.ssl_context() if ep.tls else None)
    writer.close()
    return f"{ep.host}:{ep.port} accepts {'TLS ' if ep.tls else ''}connections"


async def _model(st: Any) -> str:
    from models.registry import current_name

    version = await st.read.newest_model_version()
    current = await asyncio.to_thread(current_name, st.settings.model_dir)
    if version is None and current is None:
        raise RuntimeError("no current model in the registry and no prediction yet")
    return f"newest prediction by {version or '-'}; registry current {current or '-'}"


@router.get("/api/health", response_model=Health, responses={503: {"model": Health}},
            summary="Each dependency: broker, database, MQTT, model (503 when one is down)")
async def health(request: Request) -> Any:
    st = state(request)
    checks = {"broker": _broker(st), "database": _database(st), "model": _model(st)}
    if st.endpoints.mqtt_url:
        checks["mqtt"] = _mqtt(st.endpoints.mqtt_url)
    results = await asyncio.gather(*(_timed(c) for c in checks.values()))
    deps = dict(zip(checks, results, strict=True))
    version = None
    if deps["database"].ok:
        try:
            version = await st.read.newest_model_version()
        except Exception:
            version = None
    body = Health(status="ok" if all(d.ok for d in deps.values()) else "degraded",
                  dependencies=deps, model_version=version, ws_clients=st.hub.clients,
                  uptime_s=round(time.monotonic() - st.started, 1))
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.status == "ok" else 503)


@router.websocket("/ws/fleet")
async def ws_fleet(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.app.state.api.hub.serve(websocket, None)


@router.websocket("/ws/batteries/{battery_id}")
async def ws_battery(websocket: WebSocket, battery_id: str) -> None:
    st = websocket.app.state.api
    await websocket.accept()
    if len(battery_id) > 50 or not await st.read.battery_exists(battery_id):
        await websocket.close(code=CLOSE_UNKNOWN_BATTERY, reason="unknown battery")
        return
    await st.hub.serve(websocket, battery_id)


@router.get("/api/topics", response_model=TopicsOverview,
            summary="Topics, partitions, end offsets and consumer-group lag of the broker")
async def topics(request: Request) -> TopicsOverview:
    st = state(request)
    return await asyncio.to_thread(topics_view.overview, st.endpoints.kafka_bootstrap_servers)


@router.get("/api/topics/{name}/records", response_model=TopicRecords,
            responses={404: {"description": "No such topic."}},
            summary="The last records of a topic, Avro decoded to JSON")
async def topic_records(
    request: Request, name: Annotated[str, topics_view.TOPIC_NAME],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    partition: Annotated[int | None, Query(ge=0, le=10_000)] = None,
) -> TopicRecords:
    st = state(request)
    try:
        return await asyncio.to_thread(topics_view.last_records, st.endpoints, name, limit, partition)
    except topics_view.UnknownTopicError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/api/export", summary="Telemetry rows of a time range as CSV or Parquet (streamed)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}})
async def export_rows(
    request: Request,
    battery: Annotated[str | None, Query(max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    format: Literal["csv", "parquet"] = "csv",
) -> StreamingResponse:
    end = _utc(to) if to is not None else datetime.now(UTC)
    start = _utc(from_) if from_ is not None else end - timedelta(hours=24)
    if start >= end:
        raise HTTPException(422, [{"loc": ["query", "from"], "msg": "from must be before to",
                                   "type": "value_error"}])
    st = state(request)
    if battery is not None and not await st.read.battery_exists(battery):
        raise HTTPException(404, f"unknown battery {battery!r}")
    stem = f"telemetry_{battery or 'fleet'}_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}"
    body = export.stream(st.pool, battery, start, end, format)
    media = "text/csv" if format == "csv" else "application/vnd.apache.parquet"
    return StreamingResponse(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{stem}.{format}"'})


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
