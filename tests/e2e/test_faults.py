"""Fault injection under load: one ``evtwin up`` (two score workers, database sink, MQTT bridge,
API; the simulator runs as its own process so each scenario can stop its load) meets, one at a
time, the database stopped for 10 s, the MQTT broker stopped for 10 s, a third score worker joining
mid-run and the API killed; then the broker is restarted. After each, once the load stopped and the
pipeline drained: every reading on ev.telemetry.v1 is exactly one row of ``ev_telemetry``, every
alert episode on ev.alerts.v1 exactly one row of ``ev_alerts``, and the pipeline came back by
itself. The time from the fault's end until fresh readings reach the database again is printed
(``recovery``) and collected in the summary at the end of the module; measured, never asserted.

Stopping a service is SIGSTOP / SIGCONT of its processes: its sockets stay open and nothing
answers, the way a hung or partitioned server looks to its clients. ``evtwin up`` stops the whole
stack when an embedded service exits (by design), so the broker restart runs the same pipeline
processes without ``up``, against an embedded stack whose broker is stopped and started again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.embedded.groups import GroupWatch, remove_group_members
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO
from tests.support.pipeline import (
    Load,
    UpRun,
    alert_records,
    assert_exactly_once,
    fresh_rows_since,
    frozen,
    pipeline_pids,
    start_up,
    stop_up,
    wait,
)

OUTAGE_S = 10.0
#: Scenario → seconds from the fault's end until fresh readings reach the database again.
RECOVERY: dict[str, float] = {}


def _report(capsys: pytest.CaptureFixture[str], scenario: str, line: str) -> None:
    with capsys.disabled():
        print(f"\n[fault] {scenario}: {line}", flush=True)


@pytest.fixture(scope="module")
def up(state_root: Path, trained_model: Path) -> Iterator[UpRun]:
    state_dir = state_root / "faults-up"
    state_dir.mkdir()
    state_dir.chmod(0o755)
    run = start_up(state_dir, trained_model, "--workers", "2", "--no-simulator",
                   EVTWIN_SUPERVISE_STARTUP_S="5", EVTWIN_SUPERVISE_BACKOFF_S="1",
                   EVTWIN_SUPERVISE_MAX_RESTARTS="5")
    try:
        wanted = {"ingest", "worker-1", "worker-2", "sink", "mqtt-bridge", "api"}
        wait("the pipeline starts", lambda: pipeline_pids(run).keys() >= wanted, 90, run)
        yield run
    finally:
        stop_up(run)
        if RECOVERY:
            print("\nrecovery after each fault (s): " + ", ".join(f"{k} {v:.1f}" for k, v in RECOVERY.items()),
                  file=sys.stderr)


def _under_load(up: UpRun, name: str, seed: int) -> Load:
    started = time.time()
    load = Load(up, name, batteries=150, rate=2.0, seed=seed)
    wait("readings of the load reach the database", lambda: fresh_rows_since(up.db_url, started), 180, up)
    time.sleep(3)  # a cycle and a half of the episodes: one is open when the fault hits
    return load


def _recovery(up: UpRun, fault_end: float) -> float:
    wait("fresh readings reach the database after the fault", lambda: fresh_rows_since(up.db_url, fault_end), 180, up)
    return time.time() - fault_end


def _finish(up: UpRun, load: Load, scenario: str, recovery_s: float, pids_before: dict[str, int],
            capsys: pytest.CaptureFixture[str], exempt: tuple[str, ...] = ()) -> None:
    time.sleep(4)  # the load goes on a little after the recovery
    cycles = load.stop()
    counts = assert_exactly_once(up, load.episodes, cycles)
    assert up.proc.poll() is None
    # A crash that `up` restarted is still a recovery by itself; it is reported, not hidden.
    restarted = sorted(k for k, v in pipeline_pids(up).items() if k not in exempt and pids_before.get(k) not in (None, v))
    RECOVERY[scenario] = recovery_s
    _report(capsys, scenario, f"recovery {recovery_s:.1f} s; restarted by up: {restarted or 'none'}; "
            f"{counts['readings']} readings = rows, "
            f"{counts['episodes']} episodes in ev_alerts once each ({counts['synthetic_episodes']} synthetic); "
            f"{counts['alert_changes_resent']} alert changes published again on ev.alerts.v1 (same alert_id)")


def test_database_stopped_10s(up: UpRun, capsys: pytest.CaptureFixture[str]) -> None:
    load = _under_load(up, "db", seed=11)
    pids = pipeline_pids(up)
    with frozen(up.service_pid("postgres")):
        time.sleep(OUTAGE_S)
    fault_end = time.time()
    recovery_s = _recovery(up, fault_end)
    _finish(up, load, "database stopped 10 s", recovery_s, pids, capsys)


class _AlertSubscriber:
    """A QoS 1 subscriber of ev/battery/+/alert with a persistent session: what a dashboard sees."""

    def __init__(self, mqtt_url: str) -> None:
        import paho.mqtt.client as mqtt

        host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
        self.received: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"faults-{uuid.uuid4().hex[:8]}",
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, *a: c.subscribe("ev/battery/+/alert", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect(host, int(port), keepalive=60)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.received.append(json.loads(msg.payload))
            self.arrived.append(time.time())

    def since(self, wall_s: float) -> list[dict[str, Any]]:
        """Alerts of readings taken at or after ``wall_s``."""
        with self._lock:
            return [a for a in self.received if max(a["opened_at"], a.get("resolved_at") or 0) >= wall_s * 1000]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_mqtt_broker_stopped_10s(up: UpRun, capsys: pytest.CaptureFixture[str]) -> None:
    subscriber = _AlertSubscriber(up.stack["mqtt_url"])
    try:
        wait("the subscriber is connected", subscriber.client.is_connected, 30, up)
        time.sleep(1)
        load = _under_load(up, "mqtt", seed=12)
        pids = pipeline_pids(up)
        with frozen(up.service_pid("mqtt")):
            time.sleep(OUTAGE_S)
        fault_end = time.time()
        recovery_s = _recovery(up, fault_end)
        wait("alerts of fresh readings reach MQTT subscribers", lambda: subscriber.since(fault_end), 120, up)
        mqtt_recovery_s = min(t for t, a in zip(subscriber.arrived, subscriber.received, strict=True)
                              if a in subscriber.since(fault_end)) - fault_end
        _finish(up, load, "MQTT broker stopped 10 s", recovery_s, pids, capsys)
        RECOVERY["MQTT broker stopped 10 s (alerts on MQTT)"] = mqtt_recovery_s

        # Every alert change of the load's synthetic batteries, published at QoS 1 while the broker
        # was away or not, reached the subscriber.
        ids = set(load.episodes.ids)
        on_topic = {(a["alert_id"], a["status"]) for a in alert_records(up.bootstrap) if a["battery_id"] in ids}
        got = wait("every alert of the synthetic batteries reaches MQTT", lambda: (
            r if (r := {(a["alert_id"], a["status"]) for a in subscriber.received if a["battery_id"] in ids}) >= on_topic
            else None), 60, up)
        assert got == on_topic
        _report(capsys, "MQTT broker stopped 10 s", f"alerts of fresh readings on MQTT {mqtt_recovery_s:.1f} s after; "
                f"{len(on_topic)} alert changes of the synthetic batteries all received at QoS 1")
    finally:
        subscriber.close()


def test_score_worker_added_mid_run(up: UpRun, capsys: pytest.CaptureFixture[str]) -> None:
    load = _under_load(up, "added", seed=13)
    pids = pipeline_pids(up)
    log = up.state_dir / "worker-added.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(EVTWIN + ["worker"], env=up.env(), cwd=REPO, stdout=out, stderr=out)
    up.extra.append(worker)
    joined = time.time()
    wait("the added worker takes partitions", lambda: worker.poll() is None and "took over partitions" in
         log.read_text(errors="replace"), 120, up)
    took_s = time.time() - joined
    recovery_s = _recovery(up, joined)
    try:
        _finish(up, load, "score worker added", recovery_s, pids, capsys)
        assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
        _report(capsys, "score worker added", f"it took partitions {took_s:.1f} s after it started")
    finally:
        stopped = _stop_added_worker(up, worker)
    if not stopped:
        pytest.xfail("every reading and episode arrived once, but the added worker then did not stop within "
                     "90 s of SIGTERM (Faust's wait_empty waits for a message of a partition it no longer "
                     "holds after the rebalance); it was killed and its membership removed")


def _stop_added_worker(up: UpRun, worker: subprocess.Popen[bytes]) -> bool:
    """SIGTERM; True when it stopped cleanly. Otherwise kill it and remove its membership from the
    group (noida-db would keep a dead member's partitions; ``up`` does the same for its own)."""
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(90) == 0
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)
        remove_group_members(up.bootstrap, "evtwin-score")
        return False


def _health(api_url: str) -> int | None:
    try:
        with urllib.request.urlopen(api_url + "/api/health", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_api_restarted(up: UpRun, capsys: pytest.CaptureFixture[str]) -> None:
    api_url = up.stack["api_url"]
    wait("the API is healthy", lambda: _health(api_url) == 200, 60, up)
    load = _under_load(up, "api", seed=14)
    pids = pipeline_pids(up)
    os.kill(pids["api"], signal.SIGKILL)
    killed = time.time()
    wait("evtwin up restarts the API", lambda: pipeline_pids(up).get("api") not in (None, pids["api"]), 60, up)
    wait("/api/health answers 200 again", lambda: _health(api_url) == 200, 120, up)
    api_s = time.time() - killed
    RECOVERY["API restarted (/api/health 200)"] = api_s
    _finish(up, load, "API restarted", _recovery(up, killed), pids, capsys, exempt=("api",))
    assert f"API exited unexpectedly (pid {pids['api']}, killed by signal 9 (SIGKILL)" in up.output()
    _report(capsys, "API restarted", f"/api/health 200 again {api_s:.1f} s after the kill")


def _watch_groups(watch: GroupWatch, stop: threading.Event) -> None:
    """Check the groups every half second until ``stop``, as ``evtwin up``'s supervisor loop does."""
    while not stop.wait(0.5):
        watch.check()
    watch.close()


def test_broker_restarted(state_dir: Path, trained_model: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    """``evtwin up`` stops when an embedded service exits, so this pipeline runs without it: an
    embedded stack, two ``evtwin worker``, ``evtwin sink`` and the simulator, each its own process;
    the broker (noida-db, which keeps its data and committed offsets in its data directory) is
    stopped and started again on the same port under load. The consumer groups get the repair
    ``evtwin up`` gives them on noida-db (:class:`GroupWatch`, in a thread here). Stopped by a
    signal alone, noida-db lost readings it had acknowledged in 5 of 7 runs (6–7 rows the sink had
    written were no longer on the topic); :meth:`KafkaBroker.stop` stops its Kafka service first."""
    from connectors.embedded import process
    from connectors.embedded.stack import EmbeddedStack
    from connectors.kafka import ensure_topics
    from streams.topics import topic_specs
    from tests.support.stack_settings import free_port_settings

    # Restart on the same port at once (the port may sit in TIME_WAIT, which the broker's own bind
    # accepts but the free-port probe not).
    monkeypatch.setattr(process, "port_for", lambda requested, *args: requested or process.free_port())
    settings = free_port_settings(state_dir)
    stack = EmbeddedStack(settings)
    endpoints = stack.start()
    procs: list[subprocess.Popen[bytes]] = []
    repairs: list[str] = []
    stop_watch = threading.Event()
    try:
        ensure_topics(endpoints.kafka_bootstrap_servers, topic_specs(settings.topic_partitions))
        env = {"EVTWIN_MODEL_DIR": str(trained_model), "EVTWIN_METRICS_PORT": "0"}
        for name, argv in (("worker-1", ["worker"]), ("worker-2", ["worker"]), ("sink", ["sink"])):
            with open(state_dir / f"{name}.log", "wb") as out:
                procs.append(subprocess.Popen(EVTWIN + argv, env=cli_env(state_dir, **env), cwd=REPO,
                                              stdout=out, stderr=out))
        # The pipeline's health is the sink's: UpRun's checks stop waiting when it exits.
        pipeline = UpRun(procs[2], state_dir, json.loads((state_dir / "stack.json").read_text()),
                         state_dir / "sink.log", state_dir / "worker-1.log", trained_model)
        watch = GroupWatch(endpoints.kafka_bootstrap_servers, [settings.app_id, settings.sink_app_id],
                           report=repairs.append)
        watching = threading.Thread(target=_watch_groups, args=(watch, stop_watch), daemon=True)
        watching.start()
        load = _under_load(pipeline, "broker", seed=15)
        stack.kafka.stop()
        time.sleep(2)
        stack.kafka.start()
        stack.kafka.wait_ready(60)
        fault_end = time.time()
        recovery_s = _recovery(pipeline, fault_end)
        time.sleep(4)
        cycles = load.stop()
        counts = assert_exactly_once(pipeline, load.episodes, cycles)
        exited = {n: p.poll() for n, p in zip(("worker-1", "worker-2", "sink"), procs, strict=True) if p.poll() is not None}
        assert exited == {}, f"exited after the broker restart: {exited}"
        RECOVERY["broker restarted"] = recovery_s
        _report(capsys, "broker restarted", f"recovery {recovery_s:.1f} s; {counts['readings']} readings = rows, "
                f"{counts['episodes']} episodes in ev_alerts once each ({counts['synthetic_episodes']} synthetic); "
                f"{counts['alert_changes_resent']} alert changes published again (same alert_id); "
                f"group repairs: {repairs or 'none'}")
    finally:
        stop_watch.set()
        for load_ in pipeline.loads if "pipeline" in locals() else []:
            load_.abandon()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        stack.stop()
