"""Liveness and readiness of a pipeline process, served beside ``/metrics`` on its metrics port
(``EVTWIN_METRICS_PORT``), for Kubernetes probes and load balancers:

* ``GET /healthz`` — 200 while the process works: its loop has beaten within
  :attr:`Health.stale_after_s` (a process that never beats is live while it answers); 503 when the
  loop is stuck, so the orchestrator restarts it.
* ``GET /readyz`` — 200 once every condition the process declared is met (a score worker: it
  joined its consumer group, with its model loaded); 503 naming those that are not.
* anything else — the Prometheus exposition (``/metrics``).

Each answer is a small JSON object. The process declares its conditions with
:meth:`Health.expect` and reports them with :meth:`Health.met`; one :data:`HEALTH` per process.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import MetricsHandler


class Health:
    """What ``/healthz`` and ``/readyz`` report.

    Args:
        stale_after_s: A loop that beat once and not again for this long is not live, s.
    """

    def __init__(self, stale_after_s: float = 60.0) -> None:
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._conditions: dict[str, bool] = {}
        self._beat: float | None = None

    def expect(self, *conditions: str) -> None:
        """Declare conditions that must be met before the process is ready (not met yet)."""
        with self._lock:
            for condition in conditions:
                self._conditions.setdefault(condition, False)

    def met(self, condition: str, ok: bool = True) -> None:
        """Report ``condition`` met (or, with ``ok=False``, lost)."""
        with self._lock:
            self._conditions[condition] = ok

    def beat(self) -> None:
        """The process's loop is turning (call it periodically from the loop)."""
        self._beat = time.monotonic()

    def live(self) -> tuple[bool, dict[str, Any]]:
        """Whether the process is live, and the JSON body that says so."""
        beat = self._beat
        if beat is None:
            return True, {"live": True}
        age = time.monotonic() - beat
        return age <= self.stale_after_s, {"live": age <= self.stale_after_s, "last_beat_s": round(age, 1)}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether every declared condition is met, and the JSON body that says which are not."""
        with self._lock:
            waiting = sorted(c for c, ok in self._conditions.items() if not ok)
            met = sorted(c for c, ok in self._conditions.items() if ok)
        return not waiting, {"ready": not waiting, "met": met, "waiting": waiting}


HEALTH = Health()
"""The health of this process."""


class _Handler(MetricsHandler):
    health: Health = HEALTH

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/healthz", "/readyz"):
            super().do_GET()
            return
        ok, body = self.health.live() if path == "/healthz" else self.health.ready()
        data = json.dumps(body).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve(port: int, health: Health = HEALTH, addr: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` on ``port`` (0: any free port) from a
    daemon thread; return the server (``server_address`` has the port)."""
    handler = type("HealthHandler", (_Handler,), {"health": health})
    server = _Server((addr, port), handler)
    threading.Thread(target=server.serve_forever, name=f"metrics:{port}", daemon=True).start()
    return server


__all__ = ["HEALTH", "Health", "serve"]
