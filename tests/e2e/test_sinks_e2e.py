"""End to end on the embedded stack: simulator → broker → score worker → database sink and MQTT
bridge. Rows equal the events produced; battery_state equals the last prediction per battery; an
independent MQTT subscriber gets every battery's retained state and every alert; a replay changes
no row; a 10 s database outage mid-run loses and duplicates nothing."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from connectors import kafka
from connectors.embedded.process import stop_processes
from connectors.embedded.stack import EmbeddedStack
from models.physics.fleet import Fleet
from schemas.codec import AvroCodec
from streams.runtime.codecs import codec_for
from streams.sources.simulator import FleetSimulator
from streams.topics import ALERTS, PREDICTIONS, TELEMETRY
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO
from tests.support.stack_settings import free_port_settings
from tests.support.topic_reader import read_topic


@pytest.fixture
def private_db(stack, state_dir: Path) -> Iterator[EmbeddedStack]:  # type: ignore[no-untyped-def]
    """A PostgreSQL of this test alone (the session's broker and MQTT broker for the rest)."""
    _, ep = stack
    settings = free_port_settings(state_dir, kafka_bootstrap_servers=ep.kafka_bootstrap_servers,
                                  mqtt_url=ep.mqtt_url)
    db = EmbeddedStack(settings)
    db.start()
    yield db
    db.stop()


def _service(command: str, settings, app_var: str, app_id: str, db_url: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = cli_env(settings.state_dir, EVTWIN_DATABASE_URL=db_url, EVTWIN_METRICS_PORT="0",
                  **{app_var: app_id})
    path = settings.state_dir / f"{app_id}.log"
    log = open(path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(EVTWIN + [command], env=env, cwd=REPO, stdout=log, stderr=log)
    proc.log_path = path  # type: ignore[attr-defined]
    return proc


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    stop_processes(procs)
    for p in procs:  # shown when the test fails
        path = getattr(p, "log_path", None)
        if path is not None:
            lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if "[INFO]" not in ln]
            print(f"--- {path.name} ---\n" + "\n".join(lines[-40:]), file=sys.stderr)


def _rows(db_url: str, prefix: str) -> tuple[set[tuple[str, int]], int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT battery_id, (extract(epoch FROM time) * 1000)::bigint FROM ev_telemetry "
            "WHERE battery_id LIKE %s", (prefix + "%",)).fetchall()
    return {(b, int(t)) for b, t in rows}, len(rows)


def _wait_rows(db_url: str, prefix: str, want: int, timeout: float = 90) -> set[tuple[str, int]]:
    deadline = time.monotonic() + timeout
    keys: set[tuple[str, int]] = set()
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.Error):  # the database may be restarting
            keys, _ = _rows(db_url, prefix)
        if len(keys) >= want:
            break
        time.sleep(0.5)
    return keys


def _produce(bootstrap: str, prefix: str, batteries: int, events: int, rate_hz: float) -> list[dict]:
    produced: list[dict] = []
    codec = AvroCodec("telemetry")

    class Recording:
        def encode(self, record: dict) -> bytes:
            produced.append(dict(record))
            return codec.encode(record)

    fleet = Fleet(batteries, seed=5, start_time_s=time.time(), id_prefix=prefix)
    sim = FleetSimulator(fleet, kafka.producer(bootstrap), Recording(), None, rate_hz, 24.0)  # type: ignore[arg-type]
    sim.run(threading.Event(), max_events=events, realtime=True)
    return produced


def _low_soc_episode(bootstrap: str, battery: str) -> None:
    codec, producer = AvroCodec("telemetry"), kafka.producer(bootstrap)
    start = int(time.time() * 1000) - 30_000
    for i, soc in enumerate([30.0, 12.0, 11.0, 10.0, 10.5, 20.0, 21.0, 22.0]):
        producer.produce(TELEMETRY, codec.encode({
            "event_id": str(uuid.uuid4()), "battery_id": battery, "timestamp": start + 1000 * i,
            "seq": i, "soc": soc, "soh": 95.0, "voltage": 360.0, "current": 10.0,
            "temperature": 25.0, "charge_cycles": 50, "power_consumption": 3.6}), battery.encode())
    producer.flush(10)


def test_pipeline_fans_out_to_database_and_mqtt(stack, workers, private_db) -> None:  # type: ignore[no-untyped-def]
    settings, ep = stack
    db_url = private_db.endpoints.database_url
    prefix = f"E2E{uuid.uuid4().hex[:5]}_"
    host, port = ep.mqtt_url.removeprefix("mqtt://").split(":")
    alerts_seen: list[dict] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: alerts_seen.append(json.loads(m.payload)) if m.topic.endswith("/alert") and prefix in m.topic else None
    sub.connect(host, int(port))
    sub.subscribe("ev/battery/+/alert", qos=1)
    sub.loop_start()
    workers.start(1)
    sink = _service("sink", settings, "EVTWIN_SINK_APP_ID", f"sink-{prefix}", db_url)
    bridge = _service("mqtt-bridge", settings, "EVTWIN_BRIDGE_APP_ID", f"bridge-{prefix}", db_url)
    try:
        produced = _produce(ep.kafka_bootstrap_servers, prefix, 40, 800, 20.0)
        _low_soc_episode(ep.kafka_bootstrap_servers, prefix + "LOWSOC")
        want = len(produced) + 8
        keys = _wait_rows(db_url, prefix, want)
        assert keys == {(r["battery_id"], r["timestamp"]) for r in produced} | {
            k for k in keys if k[0] == prefix + "LOWSOC"}
        assert len([k for k in keys if k[0] == prefix + "LOWSOC"]) == 8

        # battery_state = the last prediction of every battery
        codec = codec_for(PREDICTIONS, ep)
        preds = [codec.decode(m.value()) for m in read_topic(
            ep.kafka_bootstrap_servers, PREDICTIONS, lambda m: (m.key() or b"").startswith(prefix.encode()), want)]
        last: dict[str, dict] = {}
        for p in preds:
            if p["battery_id"] not in last or p["timestamp"] > last[p["battery_id"]]["timestamp"]:
                last[p["battery_id"]] = p
        with psycopg.connect(db_url) as conn:
            state = {b: (int(t), rul, fp, fs, ff) for b, t, rul, fp, fs, ff in conn.execute(
                "SELECT battery_id, (extract(epoch FROM time) * 1000)::bigint, rul_prediction, "
                "failure_probability, fault_score, fault_flag FROM battery_state WHERE battery_id LIKE %s",
                (prefix + "%",))}
        assert set(state) == set(last)
        for b, p in last.items():
            assert state[b][0] == p["timestamp"]
            assert state[b][1] == pytest.approx(p["rul_cycles"]) and state[b][2] == pytest.approx(p["failure_probability"])
            assert state[b][3:] == (p["fault_score"], p["fault_flag"])  # the twin's fault detection, exactly

        # MQTT: retained state of every battery for a new subscriber; every alert delivered
        alert_records = [codec_for(ALERTS, ep).decode(m.value()) for m in read_topic(
            ep.kafka_bootstrap_servers, ALERTS, lambda m: (m.key() or b"").startswith(prefix.encode()),
            1000, timeout=5)]
        assert any(a["rule"] == "low_soc" for a in alert_records)
        # … and it is each battery's newest prediction (the bridge paces state messages per pack,
        # EVTWIN_MQTT_STATE_INTERVAL_S: the newest is sent when the pack's interval is over).
        deadline = time.monotonic() + 20
        while True:
            retained = _retained_states(host, int(port), prefix, len(last))
            newest = {b: s["timestamp"] for b, s in retained.items()} == {b: p["timestamp"] for b, p in last.items()}
            if newest or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert set(retained) == set(last)
        assert newest, "the retained state of some battery is not its newest prediction"
        deadline = time.monotonic() + 20
        while len({a["alert_id"] + a["status"] for a in alerts_seen}) < len(alert_records) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert {(a["alert_id"], a["status"]) for a in alerts_seen} == {(a["alert_id"], a["status"]) for a in alert_records}

        # Replay: a new sink group re-reads everything from offset 0; no row changes.
        before = _rows(db_url, prefix)
        replay = _service("sink", settings, "EVTWIN_SINK_APP_ID", f"replay-{prefix}", db_url)
        time.sleep(12)
        _stop(replay)
        assert _rows(db_url, prefix) == before
    finally:
        _stop(sink, bridge)
        sub.loop_stop()


def _retained_states(host: str, port: int, prefix: str, want: int) -> dict[str, dict]:
    got: dict[str, dict] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(c, u, m) -> None:  # type: ignore[no-untyped-def]
        if m.retain and prefix in m.topic and m.topic.endswith("/state"):
            got[m.topic.split("/")[2]] = json.loads(m.payload)

    client.on_message = on_message
    client.connect(host, port)
    client.subscribe("ev/battery/+/state")
    client.loop_start()
    deadline = time.monotonic() + 20
    while len(got) < want and time.monotonic() < deadline:
        time.sleep(0.2)
    client.loop_stop()
    client.disconnect()
    return got


def test_database_outage_mid_run_loses_and_duplicates_nothing(stack, workers, private_db) -> None:  # type: ignore[no-untyped-def]
    settings, ep = stack
    db_url = private_db.endpoints.database_url
    prefix = f"OUT{uuid.uuid4().hex[:5]}_"
    workers.start(1)
    sink = _service("sink", settings, "EVTWIN_SINK_APP_ID", f"sink-{prefix}", db_url)
    try:
        feeder_out: list[list[dict]] = []
        feeder = threading.Thread(target=lambda: feeder_out.append(
            _produce(ep.kafka_bootstrap_servers, prefix, 20, 600, 20.0)))
        feeder.start()
        time.sleep(5)
        private_db.postgres.stop()  # the database goes away mid-run…
        time.sleep(10)
        private_db.postgres.start()  # …and comes back on the same port
        private_db.postgres.wait_ready(30)
        feeder.join()
        produced = feeder_out[0]
        keys = _wait_rows(db_url, prefix, len(produced), timeout=120)
        assert keys == {(r["battery_id"], r["timestamp"]) for r in produced}
        assert _rows(db_url, prefix)[1] == len(produced)  # no duplicates
    finally:
        _stop(sink)
