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
import tempfile
import threading
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


def _produce(ep: Endpoints, rate: int, seconds: float, packs: int, stop: threading.Event) -> int:
    from confluent_kafka import Producer

    from streams.runtime.codecs import codec_for

    codec = codec_for(PREDICTIONS, ep)
    producer = Producer({"bootstrap.servers": ep.kafka_bootstrap_servers, "linger.ms": 2})
    sent, t_start = 0, time.monotonic()
    tick_s = 0.02
    while not stop.is_set() and time.monotonic() - t_start < seconds:
        tick = time.monotonic()
        now_ms = int(time.time() * 1000)
        for _ in range(int(rate * tick_s)):
            b = f"BATTERY_{sent % packs + 1:04d}"
            producer.produce(PREDICTIONS, codec.encode({
                "event_id": str(sent), "battery_id": b, "timestamp": now_ms, "seq": sent, "soc": 50.0,
                "soh": 90.0, "voltage": 370.0, "current": 10.0, "temperature": 30.0,
                "charge_cycles": 100, "power_consumption": 3.7, "rul_cycles": 800.0, "rul_p10": 600.0,
                "rul_p90": 1000.0, "failure_probability": 0.1, "anomaly_score": 0.01,
                "model_version": "bench@1", "scored_at": now_ms}), b.encode())
            sent += 1
        producer.poll(0)
        time.sleep(max(0.0, tick_s - (time.monotonic() - tick)))
    producer.flush(10)
    return sent


async def _ws_fanout(url: str, ep: Endpoints, n_clients: int, rate: int, seconds: float,
                     packs: int) -> dict[str, float]:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    delivered = [0]
    closed_codes: list[int] = []
    marker = '"scored_at": "'
    ws_url = "ws" + url.removeprefix("http") + "/ws/fleet"
    sockets = [await connect(ws_url, max_size=2**26, compression=None, open_timeout=30)
               for _ in range(n_clients)]

    async def reader(ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for msg in ws:
                arrived = time.time()
                text = msg if isinstance(msg, str) else msg.decode()
                i = text.find(marker)
                if i < 0:
                    continue
                sent = datetime.fromisoformat(text[i + len(marker): text.index('"', i + len(marker))])
                latencies.append(arrived - sent.timestamp())
                delivered[0] += text.count('"battery_id"')
        except ConnectionClosed as exc:
            closed_codes.append(exc.rcvd.code if exc.rcvd else 1006)

    tasks = [asyncio.create_task(reader(ws)) for ws in sockets]
    await asyncio.sleep(1.0)
    stop = threading.Event()
    sent = await asyncio.to_thread(_produce, ep, rate, seconds, packs, stop)
    await asyncio.sleep(2.0)
    for ws in sockets:
        await ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
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
    state = Path(tempfile.mkdtemp(prefix="evtwin-bench-api-"))
    state.chmod(0o755)
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
