"""``evtwin bench api``: the API's latency under concurrent clients, WebSocket fan-out delivery and
the API process's memory, on a fresh embedded stack.

1. Load ``packs`` packs and ``rows`` telemetry rows into the sink tables (server-side
   ``generate_series``, in chunks), plus open alerts, then ``ANALYZE``.
2. Start ``evtwin api`` as its own process (rate limit off) and drive ``GET /api/batteries/{id}``
   (random packs) and ``GET /api/fleet/summary`` with ``clients`` concurrent HTTP/1.1 clients for
   ``seconds`` each: p50/p95/p99 and requests/s.
3. Connect ``ws_clients`` clients to ``/ws/fleet``, produce ``ws_rate`` predictions/s to
   ``ev.predictions.v1`` for ``ws_seconds``, and time each frame from the production (``scored_at``)
   of its oldest prediction to its arrival: p50/p99 delivery, predictions delivered, clients dropped.
4. The API process's RSS (now and peak).

The load generator runs on the same machine (and cores) as the API, the database and the broker:
the figures are for this machine as a whole, not for the API alone.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from connectors.embedded.process import free_port, stop_processes
from connectors.embedded.stack import EmbeddedStack
from connectors.endpoints import Endpoints
from streams.settings import REPO_ROOT, Settings
from streams.tools.scratch import scratch_state
from streams.topics import PREDICTIONS, topic_specs

LOAD_CHUNK_PACKS = 50


class BenchError(RuntimeError):
    """The bench could not run (the API did not start, the stack failed)."""


def load_rows(db_url: str, packs: int, rows: int, progress: Callable[[str], None]) -> dict[str, float]:
    """Fill the sink tables: ``rows`` readings spread over ``packs`` packs (10 s apart, ending now)."""
    per_pack = max(1, rows // packs)
    t0 = time.perf_counter()
    with psycopg.connect(db_url, autocommit=True) as conn:
        from connectors.migrator import migrate

        migrate(conn)
        for start in range(1, packs + 1, LOAD_CHUNK_PACKS):
            end = min(packs, start + LOAD_CHUNK_PACKS - 1)
            conn.execute(
                "INSERT INTO ev_telemetry (time, battery_id, soc, soh, voltage, current, temperature, "
                "charge_cycles, power_consumption, rul_prediction, failure_probability, rul_p10, "
                "rul_p90, anomaly_score, model_version, event_id, scored_at, fault_score, fault_flag) "
                "SELECT now() - r * interval '10 seconds', 'BATTERY_' || lpad(b::text, 4, '0'), "
                "20 + 70 * random(), 80 + 20 * random(), 350 + 50 * random(), 200 * random() - 100, "
                "15 + 30 * random(), 100 + b, 100 * random() - 30, 300 + 1500 * random(), random(), "
                "200 + 1000 * random(), 500 + 1500 * random(), random() * 0.2, 'bench@1', "
                "md5(b::text || r::text), now() - r * interval '10 seconds', random() * 0.5, b %% 50 = 0 "
                "FROM generate_series(%s::int, %s::int) b, generate_series(0, %s::int) r",
                (start, end, per_pack - 1))
            progress(f"loaded packs {end}/{packs} ({end * per_pack:,} rows, "
                     f"{time.perf_counter() - t0:.0f} s)")
        # Every pack's newest row (one index probe per pack; a time filter would miss the packs
        # loaded first when the load takes longer than it).
        columns = ("battery_id, time, soc, soh, voltage, current, temperature, charge_cycles, "
                   "power_consumption, rul_prediction, failure_probability, rul_p10, rul_p90, "
                   "anomaly_score, model_version, event_id, scored_at, fault_score, fault_flag")
        conn.execute(
            f"INSERT INTO battery_state ({columns}) SELECT t.* FROM generate_series(1, %s::int) b, "
            f"LATERAL (SELECT {columns} FROM ev_telemetry WHERE battery_id = 'BATTERY_' || lpad(b::text, 4, '0') "
            "ORDER BY time DESC LIMIT 1) t ON CONFLICT (battery_id) DO NOTHING", (packs,))
        states = conn.execute("SELECT count(*) FROM battery_state").fetchone()
        if not states or states[0] != packs:
            raise BenchError(f"battery_state holds {states[0] if states else 0} packs, not {packs}")
        conn.execute(
            "INSERT INTO ev_alerts (alert_id, battery_id, rule, severity, status, value, threshold, "
            "message, event_id, opened_at) SELECT 'bench-' || b, 'BATTERY_' || lpad(b::text, 4, '0'), "
            "'low_rul', 'WARNING', 'OPENED', 90, 100, 'bench', 'x', now() - b * interval '1 minute' "
            "FROM generate_series(1, %s::int, 7) b ON CONFLICT DO NOTHING", (packs,))
        conn.execute("ANALYZE")
        count = conn.execute("SELECT count(*) FROM ev_telemetry").fetchone()
    return {"rows_loaded": float(count[0] if count else 0), "load_s": time.perf_counter() - t0}


def _start_api(state: Path, ep: Endpoints, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVTWIN_")}
    env.update(EVTWIN_STATE_DIR=str(state), EVTWIN_KAFKA_BOOTSTRAP_SERVERS=ep.kafka_bootstrap_servers,
               EVTWIN_DATABASE_URL=ep.database_url or "", EVTWIN_MQTT_URL=ep.mqtt_url or "",
               EVTWIN_API_RATE_PER_S="0", EVTWIN_API_WS_QUEUE="256", EVTWIN_LOG_LEVEL="WARNING")
    log = open(state / "api.log", "wb")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "api", "--port", str(port)],
                            env=env, stdout=log, stderr=log, cwd=REPO_ROOT)


def _wait_api(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the API exited with code {proc.returncode}")
        try:
            httpx.get(url + "/api/fleet/summary", timeout=5)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise BenchError("the API did not answer within 60 s")


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    a = np.asarray(values) * 1000.0
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99))}


async def _http_load(url: str, paths: Callable[[], str], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` keep-alive HTTP/1.1 connections, each sending one GET after the other for
    ``seconds``. A minimal client on raw asyncio streams: a general-purpose client (httpx) costs
    more CPU per request than the API on this machine's two cores and would be what is measured."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < end:
                t0 = time.perf_counter()
                writer.write(f"GET {paths()} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                errors += not head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {**_pcts(latencies), "requests": float(len(latencies)),
            "requests_per_s": len(latencies) / wall, "errors": float(errors)}


def _produce(ep: Endpoints, rate: int, seconds: float, packs: int) -> int:
    """Produce ``rate`` predictions/s for ``seconds`` (run in a process of its own: in the bench's
    process it would share the GIL with the WebSocket readers and fall short of its rate)."""
    from confluent_kafka import Producer

    from streams.runtime.codecs import codec_for

    codec = codec_for(PREDICTIONS, ep)
    producer = Producer({"bootstrap.servers": ep.kafka_bootstrap_servers, "linger.ms": 2})
    sent, t_start = 0, time.monotonic()
    tick_s = 0.02
    rng = np.random.default_rng(1)
    while time.monotonic() - t_start < seconds:
        tick = time.monotonic()
        now_ms = int(time.time() * 1000)
        due = int(rate * (tick - t_start + tick_s)) - sent
        values = rng.random((max(due, 0), 8))
        for v in values:  # values as a live worker writes them: full float64 precision
            b = f"BATTERY_{sent % packs + 1:04d}"
            producer.produce(PREDICTIONS, codec.encode({
                "event_id": str(sent), "battery_id": b, "timestamp": now_ms, "seq": sent,
                "soc": 20 + 70 * v[0], "soh": 80 + 20 * v[1], "voltage": 350 + 50 * v[2],
                "current": 200 * v[3] - 100, "temperature": 15 + 30 * v[4], "charge_cycles": 100,
                "power_consumption": 3.7 * v[3], "rul_cycles": 300 + 1500 * v[5],
                "rul_p10": 200 + 1000 * v[5], "rul_p90": 500 + 1500 * v[5],
                "failure_probability": float(v[6]), "anomaly_score": 0.2 * v[7],
                "model_version": "bench@1", "scored_at": now_ms, "fault_score": 0.5 * v[7],
                "fault_flag": False}), b.encode())
            sent += 1
        producer.poll(0)
        time.sleep(max(0.0, tick_s - (time.monotonic() - tick)))
    producer.flush(10)
    return sent


class _FleetReader(asyncio.Protocol):
    """A minimal WebSocket client of ``/ws/fleet`` on a raw asyncio protocol: it parses frame
    headers, reads the oldest prediction's ``scored_at`` near the start of each frame and counts
    the predictions in it, without assembling messages. A general-purpose client (the
    ``websockets`` package) spent most of the bench's CPU assembling 200 clients' megabytes per
    second and was what the fan-out figure measured."""

    MARKER = b'"scored_at":'
    COUNT = b'"battery_id"'

    def __init__(self, latencies: list[float], delivered: list[int], closed: list[int]) -> None:
        self.latencies, self.delivered, self.closed = latencies, delivered, closed
        self.transport: asyncio.Transport | None = None
        self.handshake = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.hdr = bytearray()
        self.remaining = -1  # payload bytes left of the current frame; -1 = reading a header
        self.opcode = 0
        self.head = bytearray()  # the first bytes of the current frame's payload
        self.tail = b""  # the last bytes of the previous chunk (a pattern may straddle chunks)
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(exc or ConnectionError("closed during the handshake"))

    def send_frame(self, opcode: int, payload: bytes = b"") -> None:
        """A masked client frame (payloads under 126 bytes: pong and close)."""
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body)

    def data_received(self, data: bytes) -> None:
        if not self.open.done():
            self.handshake += data
            end = self.handshake.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.handshake.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(ConnectionError(bytes(self.handshake[:200]).decode(errors="replace")))
                return
            self.open.set_result(None)
            data = bytes(self.handshake[end + 4:])
        i, n = 0, len(data)
        while i < n:
            if self.remaining < 0:  # header bytes, one at a time (at most 10 per frame)
                self.hdr.append(data[i])
                i += 1
                size = self.hdr[1] & 0x7F if len(self.hdr) >= 2 else 0
                want = 2 + (2 if size == 126 else 8 if size == 127 else 0)
                if len(self.hdr) < 2 or len(self.hdr) < want:
                    continue
                self.opcode = self.hdr[0] & 0x0F or self.opcode
                self.remaining = int.from_bytes(self.hdr[2:want], "big") if want > 2 else size
                self.hdr.clear()
                self.head.clear()
                self.tail, self.count = b"", 0
                if self.remaining == 0:
                    self._frame_done()
                continue
            chunk = data[i:i + self.remaining]
            i += len(chunk)
            self.remaining -= len(chunk)
            if len(self.head) < 4096:
                self.head += chunk[:4096 - len(self.head)]
            if self.opcode == 1:
                self.count += chunk.count(self.COUNT) + (self.tail + chunk[:11]).count(self.COUNT)
                self.tail = chunk[-11:]
            if self.remaining == 0:
                self._frame_done()

    def _frame_done(self) -> None:
        arrived = time.time()
        self.remaining = -1
        if self.opcode == 1:
            i = self.head.find(self.MARKER)
            if i >= 0:
                j = self.head.index(b'"', i + len(self.MARKER)) + 1  # with or without a space
                stamp = bytes(self.head[j:self.head.index(b'"', j)]).decode()
                self.latencies.append(arrived - datetime.fromisoformat(stamp).timestamp())
                self.delivered[0] += self.count
        elif self.opcode == 8:
            self.closed.append(int.from_bytes(self.head[:2], "big") if len(self.head) >= 2 else 1005)
        elif self.opcode == 9:
            self.send_frame(0xA, bytes(self.head))


async def _connect_fleet(host: str, port: int, latencies: list[float], delivered: list[int],
                         closed: list[int]) -> _FleetReader:
    import base64

    loop = asyncio.get_running_loop()
    _, reader = await loop.create_connection(lambda: _FleetReader(latencies, delivered, closed), host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    assert reader.transport is not None
    reader.transport.write((f"GET /ws/fleet HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await asyncio.wait_for(reader.open, 30)
    return reader


async def _ws_fanout(url: str, ep: Endpoints, n_clients: int, rate: int, seconds: float,
                     packs: int) -> dict[str, float]:
    import concurrent.futures
    import multiprocessing
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    delivered = [0]
    closed_codes: list[int] = []
    readers = [await _connect_fleet(host, port, latencies, delivered, closed_codes) for _ in range(n_clients)]
    await asyncio.sleep(1.0)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        sent = await asyncio.get_running_loop().run_in_executor(pool, _produce, ep, rate, seconds, packs)
    await asyncio.sleep(2.0)
    for r in readers:
        if r.transport is not None and not r.transport.is_closing():
            r.send_frame(0x8, (1000).to_bytes(2, "big"))
            r.transport.close()
    dropped = sum(1 for c in closed_codes if c == 4008)
    return {**{f"ws_delivery_{k}": v for k, v in _pcts(latencies).items()},
            "ws_clients": float(n_clients), "ws_predictions_produced": float(sent),
            "ws_produced_per_s": sent / seconds,
            "ws_delivered_fraction": delivered[0] / (sent * n_clients) if sent else 0.0,
            "ws_clients_dropped": float(dropped)}


def _rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return float(fields["VmRSS"].split()[0]) / 1024, float(fields["VmHWM"].split()[0]) / 1024


def run_api_bench(packs: int, rows: int, clients: int, seconds: float, ws_clients: int,
                  ws_rate: int, ws_seconds: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run the whole bench on a fresh embedded stack; return the figures."""
    with scratch_state("evtwin-bench-api-") as state:
        settings = Settings(state_dir=state, embedded_kafka_port=0, embedded_postgres_port=0,
                            embedded_mqtt_port=0)
        result: dict[str, Any] = {"packs": packs}
        with EmbeddedStack(settings) as ep:
            from connectors.kafka import ensure_topics

            ensure_topics(ep.kafka_bootstrap_servers, topic_specs(settings.topic_partitions))
            assert ep.database_url
            result.update(load_rows(ep.database_url, packs, rows, progress))
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = _start_api(state, ep, port)
            try:
                _wait_api(url, proc)
                rss_idle = _rss_mb(proc.pid)[0]
                rng = np.random.default_rng(0)

                def battery_path() -> str:
                    return f"/api/batteries/BATTERY_{int(rng.integers(1, packs + 1)):04d}"

                progress(f"GET /api/batteries/{{id}}: {clients} clients for {seconds:g} s")
                twin = asyncio.run(_http_load(url, battery_path, clients, seconds))
                result.update({f"battery_{k}": v for k, v in twin.items()})
                progress(f"GET /api/fleet/summary: {clients} clients for {seconds:g} s")
                summary = asyncio.run(_http_load(url, lambda: "/api/fleet/summary", clients, seconds))
                result.update({f"summary_{k}": v for k, v in summary.items()})
                progress(f"WebSocket: {ws_clients} clients, {ws_rate} predictions/s for {ws_seconds:g} s")
                result.update(asyncio.run(_ws_fanout(url, ep, ws_clients, ws_rate, ws_seconds, packs)))
                rss, peak = _rss_mb(proc.pid)
                result.update(api_rss_idle_mb=rss_idle, api_rss_mb=rss, api_rss_peak_mb=peak)
            finally:
                stop_processes([proc])
        return result


__all__ = ["BenchError", "load_rows", "run_api_bench"]
