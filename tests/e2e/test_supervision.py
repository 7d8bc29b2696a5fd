"""``evtwin up`` supervises its pipeline: a score worker killed under the simulator's load comes
back within the backoff while ``up`` and the other processes keep running, and the database ends
with every event once and every alert episode once; a process that crashes at start-up stops
``up`` with its name, exit status and the lines of its log that say why; crashes beyond the limit
stop ``up`` cleanly, with no process left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors import kafka
from connectors.embedded.process import RUN_MARKER, free_port
from schemas.codec import AvroCodec
from streams.topics import TELEMETRY
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO

# Every cycle of a synthetic battery's state of charge is one low_soc episode (debounce 3: opens
# at the third reading below 15 %, resolves at the third above 17 %).
_SOC_CYCLE = (30.0, 12.0, 11.0, 10.0, 10.5, 20.0, 21.0, 22.0)
_TICK_S = 0.25


@dataclass
class Up:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    stack: dict
    out: Path
    err: Path
    metrics_port: int

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


def _start_up(state_dir: Path, model_dir: Path, *args: str, **env: str) -> Up:
    out, err = state_dir / "up.out", state_dir / "up.err"
    metrics_port = int(env.pop("EVTWIN_SUPERVISOR_METRICS_PORT", "0"))
    environ = cli_env(state_dir, EVTWIN_EMBEDDED_KAFKA_PORT="0", EVTWIN_EMBEDDED_POSTGRES_PORT="0",
                      EVTWIN_EMBEDDED_MQTT_PORT="0", EVTWIN_METRICS_PORT="0",
                      EVTWIN_SUPERVISOR_METRICS_PORT=str(metrics_port), EVTWIN_MODEL_DIR=str(model_dir),
                      **env)
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(EVTWIN + ["up", "--no-live", *args], env=environ, cwd=REPO, stdout=o, stderr=e)
    stack_file = state_dir / "stack.json"
    deadline = time.monotonic() + 60
    while not stack_file.exists():
        assert proc.poll() is None, err.read_text()
        assert time.monotonic() < deadline, "stack did not start in 60 s"
        time.sleep(0.1)
    return Up(proc, state_dir, json.loads(stack_file.read_text()), out, err, metrics_port)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead for our purposes
    except OSError:
        return False


def _processes_of(state_dir: Path) -> dict[int, str]:
    """Live processes whose command line mentions ``state_dir``: pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(state_dir) in cmdline and _alive(int(entry.name)):
                    found[int(entry.name)] = cmdline
    return found


def _pipeline_pids(up: Up) -> dict[str, int]:
    """The pipeline's processes by their log's name (worker-1, sink, …): stdout is the log."""
    pids = {}
    for pid in _processes_of(up.state_dir):
        with contextlib.suppress(OSError):
            target = Path(os.readlink(f"/proc/{pid}/fd/1"))
            if target.parent == up.logs:
                pids[target.stem] = pid
    return pids


def _wait(what: str, check, timeout: float, up: Up | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        if up is not None:
            assert up.proc.poll() is None, f"evtwin up exited ({up.proc.returncode}) while {what}:\n{up.output()[-3000:]}"
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)


def _wait_all_gone(state_dir: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while left := _processes_of(state_dir):
        assert time.monotonic() < deadline, f"still running after {timeout:.0f} s: {left}"
        time.sleep(0.2)


def _stop(up: Up) -> None:
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGTERM)
        up.proc.wait(60)
    lines = [ln for ln in up.output().splitlines() if any(
        k in ln for k in ("exited", "restarted", "cleared", "error", "Traceback", "Stopp"))]
    print("--- evtwin up ---\n" + "\n".join(lines[-40:]), file=sys.stderr)  # shown when a test fails
    _wait_all_gone(up.state_dir)


def _db_keys(db_url: str) -> set[tuple[str, int]]:
    with psycopg.connect(db_url) as conn:
        try:
            rows = conn.execute("SELECT battery_id, (extract(epoch FROM time) * 1000)::bigint FROM ev_telemetry").fetchall()
        except psycopg.errors.UndefinedTable:  # the sink has not migrated yet
            return set()
    assert len(rows) == len(set(rows))
    return {(b, int(t)) for b, t in rows}


def _fleet_pairs(db_url: str) -> int:
    """Predictions the online-accuracy job joined with the simulator's truth (ev_accuracy)."""
    with psycopg.connect(db_url) as conn:
        try:
            row = conn.execute("SELECT coalesce(sum(pairs), 0) FROM ev_accuracy WHERE battery_id = '*'").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def _telemetry_keys(bootstrap: str, partitions: int) -> list[tuple[str, int]]:
    """Every reading on ev.telemetry.v1 up to its end offsets now: (battery_id, timestamp)."""
    codec = AvroCodec("telemetry")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(TELEMETRY, p), timeout=10)[1]
                for p in range(partitions)}
        consumer.assign([TopicPartition(TELEMETRY, p, OFFSET_BEGINNING) for p in range(partitions)])
        keys, seen = [], dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 60
        while any(seen[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, "could not read ev.telemetry.v1 to its end"
            for msg in consumer.consume(5000, 0.5):
                if msg.error() is None:
                    seen[msg.partition()] = msg.offset() + 1
                    rec = codec.decode(msg.value())
                    keys.append((rec["battery_id"], rec["timestamp"]))
        return keys
    finally:
        consumer.close()


class SyntheticEpisodes:
    """Batteries whose readings open and resolve one low_soc episode every cycle, produced in a
    thread next to the simulator's load until :meth:`stop` (which ends at a whole cycle)."""

    def __init__(self, bootstrap: str, batteries: int) -> None:
        self.ids = [f"SUPV{uuid.uuid4().hex[:4]}_{i}" for i in range(batteries)]
        self.producer, self.codec = kafka.producer(bootstrap), AvroCodec("telemetry")
        self.cycles = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            for soc in _SOC_CYCLE:
                now = int(time.time() * 1000)
                for battery in self.ids:
                    self.producer.produce(TELEMETRY, self.codec.encode({
                        "event_id": str(uuid.uuid4()), "battery_id": battery, "timestamp": now, "seq": seq,
                        "soc": soc, "soh": 95.0, "voltage": 360.0, "current": 10.0, "temperature": 25.0,
                        "charge_cycles": 50, "power_consumption": 3.6}), battery.encode())
                self.producer.poll(0)
                seq += 1
                time.sleep(_TICK_S)
            self.cycles += 1
        self.producer.flush(10)

    def stop(self) -> int:
        """Stop after the current cycle; return the episodes each battery had."""
        self._stop.set()
        self._thread.join(30)
        return self.cycles


def _restarts_metric(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("evtwin_process_restarts_total{")}


@pytest.fixture(scope="module")
def supervised_up(state_root: Path, trained_model: Path) -> Iterator[Up]:
    """One ``evtwin up`` with two workers under the simulator's load, started once for the
    module; a short start-up grace and one restart allowed in the window."""
    state_dir = state_root / "supervised-up"
    state_dir.mkdir()
    state_dir.chmod(0o755)
    up = _start_up(state_dir, trained_model, "--workers", "2", "--batteries", "200", "--rate", "2",
                   EVTWIN_SUPERVISE_STARTUP_S="5", EVTWIN_SUPERVISE_BACKOFF_S="1",
                   EVTWIN_SUPERVISE_MAX_RESTARTS="1", EVTWIN_SUPERVISOR_METRICS_PORT=str(free_port()))
    try:
        yield up
    finally:
        _stop(up)


def test_killed_worker_comes_back_and_nothing_is_lost_or_doubled(supervised_up: Up) -> None:
    up = supervised_up
    db_url, bootstrap = up.stack["database_url"], up.stack["kafka_bootstrap_servers"]
    wanted = {"ingest", "worker-1", "worker-2", "sink", "mqtt-bridge", "simulator", "accuracy"}
    pids = _wait("the pipeline starts", lambda: (p := _pipeline_pids(up)).keys() >= wanted and p, 60, up)
    _wait("rows reach the database", lambda: len(_db_keys(db_url)) > 0, 90, up)
    _wait("the accuracy job joins predictions with the truth", lambda: _fleet_pairs(db_url) > 0, 90, up)
    episodes = SyntheticEpisodes(bootstrap, 4)
    time.sleep(3)  # a cycle and a half: an episode is open when the worker dies

    survivor_log = up.logs / "worker-2.log"
    survivor_seen = survivor_log.stat().st_size
    os.kill(pids["worker-1"], signal.SIGKILL)
    killed_at = time.monotonic()
    _wait("worker-1 is restarted", lambda: _pipeline_pids(up).get("worker-1") not in (None, pids["worker-1"]), 20, up)
    came_back_s = time.monotonic() - killed_at
    assert came_back_s < 1 + 5, f"restarted {came_back_s:.1f} s after the kill; the backoff is 1 s"
    # Meanwhile the surviving replica takes worker-1's partitions.
    _wait("worker-2 takes over", lambda: "took over partitions" in survivor_log.read_bytes()[survivor_seen:].decode(
        errors="replace"), 30, up)
    others = {k: v for k, v in pids.items() if k != "worker-1"}
    assert {k: v for k, v in _pipeline_pids(up).items() if k != "worker-1"} == others, "another process was restarted"
    assert f"score worker 1 exited unexpectedly (pid {pids['worker-1']}, killed by signal 9 (SIGKILL)" in up.output()

    def rejoined() -> bool:  # the restarted worker took partitions back
        text = (up.logs / "worker-1.log").read_text(errors="replace")
        return "took over partitions" in text.rsplit(RUN_MARKER, 1)[-1]

    _wait("the restarted worker takes partitions", rejoined, 60, up)
    time.sleep(2)
    cycles = episodes.stop()
    cut_ms = int(time.time() * 1000)
    assert _restarts_metric(up.metrics_port) == {"ingest": 0, "worker-1": 1, "worker-2": 0, "sink": 0,
                                                 "mqtt-bridge": 0, "accuracy": 0, "api": 0, "simulator": 0}

    # Every reading on the topic up to the cut is in ev_telemetry exactly once.
    time.sleep(1)
    events = {k for k in _telemetry_keys(bootstrap, 12) if k[1] <= cut_ms}
    assert {b for b, _ in events} >= set(episodes.ids)
    rows = _wait("the sink writes every event", lambda: (r := {k for k in _db_keys(db_url) if k[1] <= cut_ms}) >= events and r, 90, up)
    assert rows == events

    # Each alert episode once: the synthetic batteries' exactly, and no episode twice anywhere.
    def low_soc() -> list[tuple]:
        with psycopg.connect(db_url) as conn:
            return conn.execute("SELECT battery_id, status, opened_at FROM ev_alerts WHERE rule = 'low_soc' "
                                "AND battery_id = ANY(%s)", (episodes.ids,)).fetchall()

    def all_resolved() -> list[tuple] | None:
        rows = low_soc()
        return rows if sum(status == "RESOLVED" for _, status, _ in rows) >= cycles * len(episodes.ids) else None

    got = _wait("every synthetic episode is resolved in ev_alerts", all_resolved, 60, up)
    assert len(got) == cycles * len(episodes.ids), f"{len(got)} low_soc rows for {cycles} cycles of {len(episodes.ids)} batteries"
    assert len({(b, t) for b, _, t in got}) == len(got)
    with psycopg.connect(db_url) as conn:
        doubled = conn.execute("SELECT battery_id, rule, opened_at, count(*) FROM ev_alerts "
                               "GROUP BY 1, 2, 3 HAVING count(*) > 1").fetchall()
    assert doubled == []
    assert up.proc.poll() is None


def test_crashes_beyond_the_limit_stop_up_cleanly(supervised_up: Up) -> None:
    """One restart is allowed in the window: kill worker-1 until ``up`` gives up (twice when this
    test runs alone, once after the test above)."""
    up = supervised_up
    _wait("worker-1 is past its start-up grace", lambda: "worker-1" in _pipeline_pids(up), 60, up)
    time.sleep(5)
    for _ in range(2):
        pid = _pipeline_pids(up).get("worker-1")
        if pid is None or up.proc.poll() is not None:
            break
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while up.proc.poll() is None and _pipeline_pids(up).get("worker-1") in (None, pid):
            assert time.monotonic() < deadline, "neither restarted nor given up"
            time.sleep(0.1)
    assert up.proc.wait(60) == 1
    err = up.err.read_text()
    assert "evtwin: error: score worker 1 exited 2 times within 300 s, giving up (at most 1 restart(s) in 300 s)" in err
    assert "the last time (killed by signal 9 (SIGKILL)" in err
    _wait_all_gone(up.state_dir)
    assert not (up.state_dir / "stack.json").exists()


def test_crash_at_start_up_stops_up_with_name_status_and_log(state_dir: Path, trained_model: Path) -> None:
    """The first worker's metrics port is taken: it dies at start-up, and ``up`` says so."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = _start_up(state_dir, trained_model, "--batteries", "20", "--metrics-port", str(port),
                       EVTWIN_SUPERVISE_STARTUP_S="60")
        try:
            code = up.proc.wait(90)
        finally:
            _stop(up)
    err = up.err.read_text()
    assert code == 1, up.output()[-3000:]
    headline = next(ln for ln in err.splitlines() if ln.startswith("evtwin: error:"))
    assert headline.startswith("evtwin: error: score worker 1 exited during start-up (exit code 1, ")
    assert str(state_dir / "logs" / "worker-1.log") in headline
    excerpt = err.split(headline, 1)[1]
    assert "Traceback (most recent call last):" in excerpt
    assert "OSError: [Errno 98] Address already in use" in excerpt
    assert "[INFO]" not in excerpt and " INFO " not in excerpt
    _wait_all_gone(state_dir)
    assert not (state_dir / "stack.json").exists()
