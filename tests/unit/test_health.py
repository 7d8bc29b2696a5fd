"""/healthz, /readyz and /metrics on one port: ready only when every declared condition is met,
not live when a loop that beat has stopped beating."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from streams.runtime.health import Health, serve


@pytest.fixture
def served() -> Iterator[tuple[Health, int]]:
    health = Health(stale_after_s=0.3)
    server = serve(0, health, addr="127.0.0.1")
    yield health, server.server_address[1]
    server.shutdown()
    server.server_close()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ready_only_when_every_declared_condition_is_met(served: tuple[Health, int]) -> None:
    health, port = served
    health.expect("group", "model")
    status, body = _get(port, "/readyz")
    assert status == 503 and json.loads(body) == {"ready": False, "met": [], "waiting": ["group", "model"]}
    health.met("model")
    assert _get(port, "/readyz")[0] == 503
    health.met("group")
    status, body = _get(port, "/readyz")
    assert status == 200 and json.loads(body)["met"] == ["group", "model"]
    health.met("group", ok=False)  # lost again (an MQTT connection dropped)
    assert json.loads(_get(port, "/readyz")[1])["waiting"] == ["group"]
    health.expect("group")  # declaring again does not reset a condition
    assert _get(port, "/readyz")[0] == 503


def test_live_until_a_loop_that_beat_stops_beating(served: tuple[Health, int]) -> None:
    health, port = served
    assert _get(port, "/healthz")[0] == 200  # never beat: live while it answers
    health.beat()
    assert _get(port, "/healthz")[0] == 200
    time.sleep(0.5)
    status, body = _get(port, "/healthz")
    assert status == 503 and json.loads(body)["live"] is False
    health.beat()
    assert _get(port, "/healthz")[0] == 200


def test_metrics_are_served_on_the_same_port(served: tuple[Health, int]) -> None:
    _, port = served
    status, body = _get(port, "/metrics")
    assert status == 200 and "# TYPE" in body
