"""WebSocket streams against the real broker: predictions produced to ev.predictions.v1 reach a
client that follows their battery within 1 s; a stalled client (it stops reading its socket) is
dropped while a live one keeps receiving; alerts arrive as alert messages; an unknown battery is
closed with 4404."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from connectors import kafka
from connectors.endpoints import Endpoints
from connectors.timescale import TimescaleWriter
from streams.api.server import ThreadedServer
from streams.runtime.codecs import codec_for
from streams.topics import ALERTS, PREDICTIONS
from tests.support.database import drop_database, fresh_database
from tests.support.sink_records import alert, prediction
from tests.support.stack_settings import free_port_settings

FOLLOWED = "WS_" + uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def api(stack, state_root: Path) -> Iterator[tuple[str, Endpoints]]:  # type: ignore[no-untyped-def]
    _, ep = stack
    url = fresh_database(ep.database_url, "evtwin_ws")
    with TimescaleWriter(url, retry_for_s=5) as writer:
        writer.write_predictions([prediction(FOLLOWED, int(time.time() * 1000))])
    endpoints = Endpoints(kafka_bootstrap_servers=ep.kafka_bootstrap_servers, database_url=url,
                          mqtt_url=ep.mqtt_url, schema_registry_url=ep.schema_registry_url,
                          mlflow_tracking_uri=None)
    settings = free_port_settings(state_root / "api-ws", api_rate_per_s=0, api_ws_queue=4,
                                  api_ws_send_timeout_s=2.0, api_ws_batch_ms=100)
    with ThreadedServer(settings, endpoints) as server:
        yield server.url, ep
    drop_database(url)


def _ws_url(http_url: str, path: str) -> str:
    return "ws" + http_url.removeprefix("http") + path


class Follower(threading.Thread):
    """A client that reads every frame and notes when each prediction of FOLLOWED arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.ws = connect(url, open_timeout=10, max_size=2**26)
        self.hello = json.loads(self.ws.recv(timeout=10))
        self.arrivals: dict[str, float] = {}  # reading time (ISO) of FOLLOWED -> arrival (Unix s)
        self.alerts: list[dict[str, Any]] = []
        self.closed: int | None = None

    def run(self) -> None:
        try:
            while True:
                msg = json.loads(self.ws.recv())
                now = time.time()
                if msg["type"] == "predictions":
                    for p in msg["data"]:
                        if p["battery_id"] == FOLLOWED:
                            self.arrivals[p["time"]] = now
                elif msg["type"] == "alert":
                    self.alerts.append(msg["data"])
        except ConnectionClosed as exc:
            self.closed = exc.rcvd.code if exc.rcvd else None


def _stalled_client(http_url: str, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads: a small receive
    buffer, so the server's sends back up at once."""
    parts = urlsplit(http_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _produce_predictions(ep: Endpoints, seconds: float, rate: int) -> list[tuple[int, float]]:
    """Predictions for 500 other packs and FOLLOWED at ``rate``/s; (time ms, produced at) of
    FOLLOWED's."""
    codec, producer = codec_for(PREDICTIONS, ep), kafka.producer(ep.kafka_bootstrap_servers)
    mine: list[tuple[int, float]] = []
    t_end = time.monotonic() + seconds
    ts = int(time.time() * 1000)
    while time.monotonic() < t_end:
        tick = time.monotonic()
        for i in range(rate // 10):
            ts += 1
            bid = FOLLOWED if i == 0 else f"WSFLEET_{i % 500:04d}"
            producer.produce(PREDICTIONS, codec.encode(prediction(bid, ts, scored_at=ts)), bid.encode())
        producer.flush(5)
        mine.append((ts - rate // 10 + 1, time.time()))
        time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    return mine


def test_follower_gets_its_predictions_within_a_second_and_a_stalled_client_is_dropped(api) -> None:  # type: ignore[no-untyped-def]
    url, ep = api
    follower = Follower(_ws_url(url, f"/ws/batteries/{FOLLOWED}"))
    assert follower.hello == {**follower.hello, "type": "hello", "battery_id": FOLLOWED}
    follower.start()
    fleet_reader = Follower(_ws_url(url, "/ws/fleet"))
    fleet_reader.start()
    stalled = _stalled_client(url, "/ws/fleet")
    time.sleep(0.5)
    assert httpx.get(url + "/api/health", timeout=30).json()["ws_clients"] == 3

    produced = _produce_predictions(ep, seconds=6.0, rate=4000)
    time.sleep(1.5)
    from datetime import UTC, datetime

    latencies = []
    for ts, sent in produced:
        key = datetime.fromtimestamp(ts / 1000, UTC).isoformat()
        assert key in follower.arrivals, f"prediction {key} never reached the follower"
        latencies.append(follower.arrivals[key] - sent)
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    assert len(fleet_reader.arrivals) == len(produced)  # the live fleet client missed nothing

    # the stalled client was dropped: only the two live clients remain
    assert httpx.get(url + "/api/health", timeout=30).json()["ws_clients"] == 2
    stalled.settimeout(10)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    received = b""
    try:
        while chunk := stalled.recv(1 << 16):  # drains what was sent, then the close
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        stalled.close()
    assert follower.closed is None and fleet_reader.closed is None
    follower.ws.close()
    fleet_reader.ws.close()


def test_fleet_clients_get_the_same_frames_serialized_once(api) -> None:  # type: ignore[no-untyped-def]
    """Three fleet clients receive the very same frames, and each large frame was serialized once
    for all of them (streams/api/wsframes.py; the server runs in this process)."""
    from streams.api.wsframes import FRAMES, SHARED_MIN_CHARS

    url, ep = api
    clients = [connect(_ws_url(url, "/ws/fleet"), open_timeout=10, max_size=2**26) for _ in range(3)]
    for ws in clients:
        json.loads(ws.recv(timeout=10))  # hello
    serialized, shared = FRAMES.serialized, FRAMES.shared
    produced = _produce_predictions(ep, seconds=2.0, rate=4000)
    frames: list[list[str]] = [[], [], []]
    for ws, got in zip(clients, frames, strict=True):
        while True:
            try:
                text = ws.recv(timeout=2)
            except TimeoutError:
                break
            if json.loads(text)["type"] == "predictions":
                got.append(text)
        ws.close()
    assert frames[0] and frames[0] == frames[1] == frames[2]
    assert sum(text.count('"battery_id"') for text in frames[0]) == 400 * len(produced)
    large = [text for text in frames[0] if len(text) >= SHARED_MIN_CHARS]
    assert large, "no frame large enough to be shared"
    assert FRAMES.serialized - serialized == len(large)
    assert FRAMES.shared - shared == 2 * len(large)


class _RecordingHub:
    """What the live consumer hands over, recorded; ``clients`` decides whether it may rest."""

    def __init__(self) -> None:
        self.clients = 0
        self.predictions: list[dict[str, Any]] = []

    def has_clients(self) -> bool:
        return self.clients > 0

    def publish(self, predictions: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
        self.predictions += predictions


def test_an_idle_consumer_rests_and_loses_nothing_produced_meanwhile(api) -> None:  # type: ignore[no-untyped-def]
    """Quiet topics and no WebSocket client: the live consumer gives its partitions up between
    polls (it would keep the broker busy answering empty fetches); bursts produced while it rests
    are all handed over, each exactly once. With a client connected it does not rest."""
    from streams.api.hub import LiveConsumer

    _, ep = api
    hub = _RecordingHub()
    parts = {t: s.partitions for t, s in kafka.list_topics(ep.kafka_bootstrap_servers).items()
             if t in (PREDICTIONS, ALERTS)}
    live = LiveConsumer(kafka.consumer(ep.kafka_bootstrap_servers, "evtwin-test-live", **{"fetch.wait.max.ms": 20}),
                        hub, codec_for(PREDICTIONS, ep), codec_for(ALERTS, ep), parts)  # type: ignore[arg-type]
    live.start()
    try:
        time.sleep(1.0)
        assert live.rests >= 4, "an idle consumer should rest several times a second"
        codec, producer = codec_for(PREDICTIONS, ep), kafka.producer(ep.kafka_bootstrap_servers)
        mine = "REST_" + uuid.uuid4().hex[:6]
        base = int(time.time() * 1000)
        stamps = []
        for burst in range(8):
            for i in range(5):
                ts = base + 10 * burst + i
                stamps.append(ts)
                producer.produce(PREDICTIONS, codec.encode(prediction(mine, ts, scored_at=ts)), mine.encode())
            producer.flush(5)
            time.sleep(0.05 * (burst + 1))  # land in rests of every length and between them
        deadline = time.monotonic() + 5
        while len([p for p in hub.predictions if p["battery_id"] == mine]) < len(stamps) and time.monotonic() < deadline:
            time.sleep(0.05)
        from datetime import UTC, datetime

        got = sorted(p["time"] for p in hub.predictions if p["battery_id"] == mine)
        assert got == sorted(datetime.fromtimestamp(ts / 1000, UTC).isoformat() for ts in stamps)  # all, once
        hub.clients = 1
        time.sleep(0.5)
        rests = live.rests
        time.sleep(1.0)
        assert live.rests == rests, "a consumer with clients connected must not rest"
    finally:
        live.close()


def test_alerts_are_pushed_to_fleet_and_battery_clients(api) -> None:  # type: ignore[no-untyped-def]
    url, ep = api
    follower = Follower(_ws_url(url, f"/ws/batteries/{FOLLOWED}"))
    follower.start()
    time.sleep(0.3)
    codec, producer = codec_for(ALERTS, ep), kafka.producer(ep.kafka_bootstrap_servers)
    now = int(time.time() * 1000)
    producer.produce(ALERTS, codec.encode(alert("ws-alert-1", FOLLOWED, "OPENED", now)), FOLLOWED.encode())
    producer.produce(ALERTS, codec.encode(alert("ws-alert-2", "SOMEONE_ELSE", "OPENED", now)), b"SOMEONE_ELSE")
    producer.flush(5)
    deadline = time.monotonic() + 5
    while not follower.alerts and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert [a["alert_id"] for a in follower.alerts] == ["ws-alert-1"]
    assert follower.alerts[0]["status"] == "OPENED" and follower.alerts[0]["rule"] == "over_temperature"
    follower.ws.close()


def test_unknown_battery_is_closed_with_4404(api) -> None:  # type: ignore[no-untyped-def]
    url, _ = api
    with connect(_ws_url(url, "/ws/batteries/NOPE_404"), open_timeout=10) as ws, \
            pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4404
