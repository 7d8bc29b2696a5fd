"""The FastAPI application factory: routes, WebSocket hub and the static web pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent / "web"


def create_app(web_dir: Path | None = WEB_DIR) -> FastAPI:
    """Build the application.

    Args:
        web_dir: Folder of the web pages, served at ``/`` (``index.html``) when it exists.
    """
    app = FastAPI(title="EV Battery Digital Twin API", version="1.0",
                  description="REST and WebSocket API of the EV battery twin (see streams/api/schemas.py).")
    if web_dir is not None and web_dir.is_dir():
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")
    return app


__all__ = ["WEB_DIR", "create_app"]
