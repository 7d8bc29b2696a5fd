"""End to end: simulator (applying commands) → broker → score worker → database sink → API. After a
short run the API's twin of a pack equals its rows; a desired-state change made through the API
reaches the simulator, which applies it and reports back, and the twin shows desired = reported
with the time they converged; a WebSocket client following the pack receives its predictions."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from websockets.sync.client import connect

from connectors import kafka
from connectors.embedded.process import stop_processes
from connectors.endpoints import Endpoints
from models.physics.faults import COOLING_FAILURE
from models.physics.fleet import Fleet
from streams.api.security import hash_key
from streams.api.server import ThreadedServer
from streams.runtime.codecs import codec_for
from streams.sources.commands import CommandApplier
from streams.sources.simulator import FleetSimulator
from streams.topics import COMMANDS, REPORTED, TELEMETRY
from tests.support.cli import EVTWIN, cli_env
from tests.support.database import drop_database, fresh_database
from tests.support.paths import REPO
from tests.support.stack_settings import free_port_settings

KEY = "e2e-" + uuid.uuid4().hex


@pytest.fixture
def db_url(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    _, ep = stack
    url = fresh_database(ep.database_url, "evtwin_api_e2e")
    yield url
    drop_database(url)


def _sink(settings, db_url: str, app_id: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = cli_env(settings.state_dir, EVTWIN_DATABASE_URL=db_url, EVTWIN_METRICS_PORT="0",
                  EVTWIN_SINK_APP_ID=app_id)
    log = open(settings.state_dir / f"{app_id}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(EVTWIN + ["sink"], env=env, cwd=REPO, stdout=log, stderr=log)


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_desired_state_reaches_the_simulator_and_the_twin_converges(  # type: ignore[no-untyped-def]
        stack, workers, db_url: str, state_root: Path) -> None:
    settings, ep = stack
    prefix = f"TWIN{uuid.uuid4().hex[:5]}_"
    fleet = Fleet(12, seed=11, start_time_s=time.time(), id_prefix=prefix)
    bootstrap = ep.kafka_bootstrap_servers
    producer = kafka.producer(bootstrap)
    parts = kafka.list_topics(bootstrap)[COMMANDS].partitions
    applier = CommandApplier(kafka.consumer(bootstrap, f"sim-{prefix}"), producer,
                             codec_for(COMMANDS, ep), codec_for(REPORTED, ep), parts)
    sim = FleetSimulator(fleet, producer, codec_for(TELEMETRY, ep), None, 4.0, 24.0, commands=applier)
    stop = threading.Event()
    sim_thread = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    workers.start(1)
    sink = _sink(settings, db_url, f"sink-{prefix}")
    sim_thread.start()
    battery = fleet.battery_ids[3]
    try:
        def states() -> int:
            with psycopg.connect(db_url) as conn:
                try:
                    return int(conn.execute("SELECT count(*) FROM battery_state WHERE battery_id LIKE %s",
                                            (prefix + "%",)).fetchone()[0])  # type: ignore[index]
                except psycopg.errors.UndefinedTable:
                    return 0
        _wait(lambda: states() == 12, 120, "the sink's battery_state rows")
        api_settings = free_port_settings(state_root / f"api-{prefix}", api_keys=hash_key(KEY),
                                          api_rate_per_s=0)
        endpoints = Endpoints(kafka_bootstrap_servers=bootstrap, database_url=db_url,
                              mqtt_url=ep.mqtt_url, schema_registry_url=ep.schema_registry_url,
                              mlflow_tracking_uri=None)
        with ThreadedServer(api_settings, endpoints) as server, \
                httpx.Client(base_url=server.url, timeout=30) as client:
            # the API's twin equals the rows the pipeline wrote
            page = client.get("/api/batteries", params={"q": prefix, "limit": 100}).json()
            assert page["total"] == 12
            twin = client.get(f"/api/batteries/{battery}").json()
            with psycopg.connect(db_url) as conn:
                t, soc, rul = conn.execute("SELECT time, soc, rul_prediction FROM battery_state "
                                           "WHERE battery_id = %s", (battery,)).fetchone()  # type: ignore[misc]
            assert datetime.fromisoformat(twin["reported"]["time"]) <= t
            assert twin["prediction"]["model_version"] and twin["prediction"]["rul_p10"] <= twin["prediction"]["rul_p90"]

            # live: a follower of the pack gets its predictions
            ws = connect("ws" + server.url.removeprefix("http") + f"/ws/batteries/{battery}", open_timeout=10)
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            frame = json.loads(ws.recv(timeout=10))
            while frame["type"] != "predictions":
                frame = json.loads(ws.recv(timeout=10))
            assert {p["battery_id"] for p in frame["data"]} == {battery}

            # desired state: PUT, then the simulator applies it and the twin converges
            desired = {"usage_profile": "commercial", "climate": "hot", "max_soc": 72.0,
                       "dc_share": 0.9, "fault": "cooling_failure"}
            put = client.put(f"/api/batteries/{battery}/desired", json=desired, headers={"X-API-Key": KEY})
            assert put.status_code == 200, put.text
            assert put.json()["converged"] is False
            view = _wait(lambda: (v := client.get(f"/api/batteries/{battery}/desired").json())["converged"] and v,
                         30, "the twin to converge")
            assert view["reported"] == view["desired"] == desired
            assert view["reported_version"] == view["desired_version"] == put.json()["desired_version"]
            assert view["converged_at"] >= view["requested_at"]
            i = fleet.battery_ids.index(battery)
            assert fleet.usage.target_soc[i] == pytest.approx(0.72) and fleet.usage.dc_share[i] == 0.9
            assert fleet.fault_code[i] == COOLING_FAILURE
            # the WebSocket follower is told too
            deadline = time.monotonic() + 10
            reported = None
            while reported is None and time.monotonic() < deadline:
                msg = json.loads(ws.recv(timeout=10))
                if msg["type"] == "reported":
                    reported = msg["data"]
            assert reported is not None and reported["reported"]["max_soc"] == 72.0
            ws.close()
            twin = client.get(f"/api/batteries/{battery}").json()
            assert twin["desired"]["converged"] is True
    finally:
        stop.set()
        sim_thread.join(10)
        applier.close()
        stop_processes([sink])
        print((settings.state_dir / f"sink-{prefix}.log").read_text(errors="replace")[-3000:])
