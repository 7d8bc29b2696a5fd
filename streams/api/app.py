"""The FastAPI application factory: routes, WebSocket hub and the static web pages.

``create_app(settings, endpoints)`` builds the full API (database pool, Kafka producer, the one live
consumer, the reports consumer, all opened in the lifespan); ``create_app()`` without them serves
only the web pages (for page development).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.api.metrics import ApiMetrics, RequestMetricsMiddleware
from streams.api.security import KeyChecker, RateLimiter, parse_key_hashes, retry_after
from streams.runtime.heap import freeze_heap

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
#: Swagger UI's files (vendored from npm, see web/vendor/README.md): /docs works offline.
DOCS_ASSETS = WEB_DIR / "vendor" / "swagger-ui"


@dataclass
class ApiState:
    """What the routes share: settings, endpoints and the open clients (set in the lifespan)."""

    settings: Any
    endpoints: Any
    keys: KeyChecker
    limiter: RateLimiter
    write_limiter: RateLimiter
    started: float = field(default_factory=time.monotonic)
    pool: Any = None
    read: Any = None
    desired: Any = None
    hub: Any = None
    live: Any = None
    reported: Any = None
    producer: Any = None


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    from connectors import kafka
    from streams.api.desired import DesiredStore, ensure_table
    from streams.api.hub import Hub, LiveConsumer
    from streams.api.readmodel import ReadModel
    from streams.api.reported import ReportedStore
    from streams.runtime.codecs import codec_for
    from streams.topics import ALERTS, COMMANDS, PREDICTIONS, REPORTED

    st: ApiState = app.state.api
    s, ep = st.settings, st.endpoints
    from connectors.migrator import migrate

    with psycopg.connect(ep.database_url, autocommit=True, connect_timeout=10) as conn:
        migrate(conn)  # the sink tables, if the sink has not created them yet (idempotent)
        ensure_table(conn)
    # Autocommit: a read is one round trip to PostgreSQL, not three (psycopg opens a transaction
    # with its own BEGIN, and the pool ends it with a COMMIT); writes and the export's server-side
    # cursor open theirs explicitly (conn.transaction()).
    st.pool = AsyncConnectionPool(ep.database_url, min_size=1, max_size=s.api_db_pool_size,
                                  kwargs={"application_name": "evtwin-api", "autocommit": True},
                                  open=False)
    await st.pool.open(wait=True, timeout=30)
    st.read = ReadModel(st.pool)
    st.producer = kafka.producer(ep.kafka_bootstrap_servers, **{"linger.ms": 0})
    st.desired = DesiredStore(st.pool, st.producer, codec_for(COMMANDS, ep))
    st.hub = Hub(s.api_ws_batch_ms, s.api_ws_queue, s.api_ws_send_timeout_s)
    await st.hub.start()
    present = kafka.list_topics(ep.kafka_bootstrap_servers)
    parts = {t: present[t].partitions for t in (PREDICTIONS, ALERTS, REPORTED) if t in present}
    stop = threading.Event()
    if REPORTED in parts:
        st.reported = ReportedStore(ep.database_url, st.hub, stop)
    else:
        log.warning("topic %s missing: reported states are not followed", REPORTED)
    st.live = LiveConsumer(
        kafka.consumer(ep.kafka_bootstrap_servers, "evtwin-api-live", **LiveConsumer.FETCH_CONFIG),
        st.hub, codec_for(PREDICTIONS, ep), codec_for(ALERTS, ep), parts,
        codec_for(REPORTED, ep) if st.reported else None,
        st.reported.store if st.reported else None)
    st.live.stop_event = stop
    st.live.start()
    freeze_heap()
    try:
        yield
    finally:
        await st.hub.stop()
        st.live.close()
        if st.reported is not None:
            st.reported.close()
        st.producer.flush(5)
        st.producer = st.desired = None  # the producer's threads end with it
        await st.pool.close()


def _client_identity(request: Request) -> str:
    key = request.headers.get("x-api-key") or _bearer(request.headers.get("authorization"))
    if key:
        import hashlib

        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return "ip:" + (request.client.host if request.client else "?")


def _bearer(value: str | None) -> str | None:
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


def create_app(settings: Any = None, endpoints: Any = None,
               web_dir: Path | None = WEB_DIR) -> FastAPI:
    """Build the application.

    Args:
        settings: :class:`streams.settings.Settings`; ``None`` = the web pages only.
        endpoints: :class:`connectors.endpoints.Endpoints` of the stack (database, broker, MQTT).
        web_dir: Folder of the web pages, served at ``/`` (``index.html``) when it exists.

    Raises:
        KeyConfigError: ``EVTWIN_API_KEYS`` holds an entry that is not a SHA-256 digest.
    """
    full = settings is not None and endpoints is not None
    app = FastAPI(title="EV Battery Digital Twin API", version="1.0",
                  description="REST and WebSocket API of the EV battery twin. WebSocket streams: "
                  "/ws/fleet and /ws/batteries/{id} (see streams/api/schemas.py).",
                  lifespan=_lifespan if full else None, docs_url=None, redoc_url=None)
    _add_docs(app)
    if full:
        keys = settings.api_keys.get_secret_value() if settings.api_keys else None
        app.state.api = ApiState(
            settings=settings, endpoints=endpoints, keys=KeyChecker(parse_key_hashes(keys)),
            limiter=RateLimiter(settings.api_rate_per_s, 2 * settings.api_rate_per_s),
            write_limiter=RateLimiter(settings.api_write_rate_per_min / 60.0,
                                      max(1.0, settings.api_write_rate_per_min / 6.0)))
        origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
        if origins:
            app.add_middleware(CORSMiddleware, allow_origins=origins,
                               allow_methods=["GET", "PUT", "POST"],
                               allow_headers=["X-API-Key", "Authorization", "Content-Type"])
        app.add_middleware(RateLimitMiddleware, limiter=app.state.api.limiter)
        _add_metrics(app, ApiMetrics(app.state.api))
        from streams.api import routes_accuracy, routes_live, routes_read, routes_write

        app.include_router(routes_read.router)
        app.include_router(routes_accuracy.router)
        app.include_router(routes_write.router)
        app.include_router(routes_live.router)
    if web_dir is not None and web_dir.is_dir():
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")
    return app


def _add_metrics(app: FastAPI, metrics: ApiMetrics) -> None:
    """``GET /metrics`` (Prometheus text format) and the middleware that counts every request
    (outermost: a 429 of the rate limiter is counted too)."""
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_docs(app: FastAPI) -> None:
    """Interactive docs at ``/docs`` from the vendored Swagger UI: FastAPI's default page loads it
    from a CDN and shows a blank page on a machine without the internet. (ReDoc, also from a CDN
    by default, is not served: one documentation page is enough.)"""
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} — docs",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


class RateLimitMiddleware:
    """Every ``/api/`` request takes a token of its key's (or client IP's) bucket; 429 with
    ``Retry-After`` when the bucket is empty. Pure ASGI (no task per request)."""

    def __init__(self, app: Any, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.limiter.rate > 0 and scope["type"] == "http" and scope["path"].startswith("/api/"):
            wait = self.limiter.take(_client_identity(Request(scope)))
            if wait > 0:
                response = JSONResponse({"detail": "rate limit exceeded; retry later"},
                                        status_code=429, headers={"Retry-After": retry_after(wait)})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


__all__ = ["WEB_DIR", "ApiState", "create_app"]
