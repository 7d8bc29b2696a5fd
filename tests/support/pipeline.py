"""A running ``evtwin up`` for fault-injection tests: start and stop it, find its processes, freeze
an embedded service (SIGSTOP / SIGCONT), put the simulator's load on it, and compare what reached
the database with what went through the broker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors import kafka
from schemas.codec import AvroCodec
from streams.topics import ALERTS, TELEMETRY
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO

# One low_soc episode per cycle of a synthetic battery's state of charge (debounce 3: opens at the
# third reading below 15 %, resolves at the third above 17 %).
SOC_CYCLE = (30.0, 12.0, 11.0, 10.0, 10.5, 20.0, 21.0, 22.0)
TICK_S = 0.25


@dataclass
class UpRun:
    """One ``evtwin up`` subprocess and where it keeps its state."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    stack: dict[str, Any]
    out: Path
    err: Path
    model_dir: Path
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def db_url(self) -> str:
        return str(self.stack["database_url"])

    @property
    def bootstrap(self) -> str:
        return str(self.stack["kafka_bootstrap_servers"])

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def service_pid(self, name: str) -> int:
        """The pid of an embedded service (``kafka``, ``postgres``, ``mqtt``) from stack.json."""
        return int(self.stack["services"][name]["pid"])

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of another ``evtwin`` command against this stack."""
        return cli_env(self.state_dir, EVTWIN_MODEL_DIR=str(self.model_dir), EVTWIN_METRICS_PORT="0", **extra)


def start_up(state_dir: Path, model_dir: Path, *args: str, wait_api: bool = True, **env: str) -> UpRun:
    """Start ``evtwin up --no-live ARGS`` on free ports (``env`` overrides any EVTWIN_* of it) and
    wait for its stack.json and, unless ``wait_api`` is false or ``--no-api`` given, its API URL."""
    out, err = state_dir / "up.out", state_dir / "up.err"
    settings = {"EVTWIN_EMBEDDED_KAFKA_PORT": "0", "EVTWIN_EMBEDDED_POSTGRES_PORT": "0",
                "EVTWIN_EMBEDDED_MQTT_PORT": "0", "EVTWIN_METRICS_PORT": "0", "EVTWIN_API_PORT": "0",
                "EVTWIN_SUPERVISOR_METRICS_PORT": "0", "EVTWIN_MODEL_DIR": str(model_dir), **env}
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(EVTWIN + ["up", "--no-live", *args], env=cli_env(state_dir, **settings),
                                cwd=REPO, stdout=o, stderr=e)
    stack_file = state_dir / "stack.json"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, err.read_text()
        assert time.monotonic() < deadline, "the stack and its API did not start in 120 s"
        with contextlib.suppress(OSError, ValueError):
            stack = json.loads(stack_file.read_text())
            if stack.get("api_url") or not wait_api or "--no-api" in args:
                return UpRun(proc, state_dir, stack, out, err, model_dir)
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead for our purposes
    except OSError:
        return False


def _processes_of(state_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(state_dir) in cmdline and alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


def pipeline_pids(up: UpRun) -> dict[str, int]:
    """The pipeline processes ``up`` supervises, by their log's name (worker-1, sink, api, …)."""
    pids = {}
    for pid in _processes_of(up.state_dir):
        with contextlib.suppress(OSError):
            target = Path(os.readlink(f"/proc/{pid}/fd/1"))
            if target.parent == up.logs:
                pids[target.stem] = pid
    return pids


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, …)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().split(")")[-1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """Stop a service and all its processes (SIGSTOP: sockets stay open, nothing answers), and let
    it go on again (SIGCONT) on leaving the block."""
    os.kill(pid, signal.SIGSTOP)  # first the parent: it forks no new child while we look
    kids = descendants(pid)
    for kid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(kid, signal.SIGSTOP)
    try:
        yield
    finally:
        for kid in [*kids, *descendants(pid), pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGCONT)


def wait(what: str, check: Callable[[], Any], timeout: float, up: UpRun | None = None) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` or if ``up`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if up is not None:
            assert up.proc.poll() is None, f"evtwin up exited ({up.proc.returncode}) while {what}:\n{up.output()[-3000:]}"
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.25)


def stop_up(up: UpRun) -> None:
    for load in up.loads:  # left running by a failed test
        load.abandon()
    for proc in up.extra:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGTERM)
        up.proc.wait(90)
    lines = [ln for ln in up.output().splitlines() if any(
        k in ln for k in ("exited", "restarted", "cleared", "error", "Traceback", "Stopp"))]
    print("--- evtwin up ---\n" + "\n".join(lines[-40:]), file=sys.stderr)  # shown when a test fails
    wait_all_gone(up.state_dir)


def wait_all_gone(state_dir: Path, timeout: float = 60) -> None:
    """Fail unless every process whose command line names ``state_dir`` is gone within ``timeout``."""
    deadline = time.monotonic() + timeout
    while left := _processes_of(state_dir):
        assert time.monotonic() < deadline, f"still running after {timeout:.0f} s: {left}"
        time.sleep(0.2)


# --- load --------------------------------------------------------------------------------------


class SyntheticEpisodes:
    """Batteries that open and resolve one low_soc episode every cycle (2 s), produced in a thread
    until :meth:`stop` (which ends at a whole cycle, every episode resolved)."""

    def __init__(self, bootstrap: str, batteries: int, prefix: str) -> None:
        self.ids = [f"{prefix}{uuid.uuid4().hex[:4]}_{i}" for i in range(batteries)]
        self.producer, self.codec = kafka.producer(bootstrap), AvroCodec("telemetry")
        self.cycles = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            for soc in SOC_CYCLE:
                now = int(time.time() * 1000)
                for battery in self.ids:
                    self.producer.produce(TELEMETRY, self.codec.encode({
                        "event_id": str(uuid.uuid4()), "battery_id": battery, "timestamp": now, "seq": seq,
                        "soc": soc, "soh": 95.0, "voltage": 360.0, "current": 10.0, "temperature": 25.0,
                        "charge_cycles": 50, "power_consumption": 3.6}), battery.encode())
                self.producer.poll(0)
                seq += 1
                time.sleep(TICK_S)
            self.cycles += 1
        assert self.producer.flush(30) == 0

    def stop(self) -> int:
        """Stop after the current cycle; return the episodes each battery had."""
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive()
        return self.cycles


class Load:
    """The simulator (``evtwin simulate``, its own process) plus :class:`SyntheticEpisodes`."""

    def __init__(self, up: UpRun, name: str, *, batteries: int = 150, rate: float = 2.0,
                 episode_batteries: int = 4, seed: int = 7) -> None:
        self.log = up.state_dir / f"simulator-{name}.log"
        with open(self.log, "wb") as log:
            self.sim = subprocess.Popen(
                EVTWIN + ["simulate", "--batteries", str(batteries), "--rate", str(rate), "--seed", str(seed),
                          "--metrics-port", "0", "--no-commands"],
                env=up.env(), cwd=REPO, stdout=log, stderr=log)
        self.episodes = SyntheticEpisodes(up.bootstrap, episode_batteries, prefix=name.upper()[:6])
        up.loads.append(self)

    def abandon(self) -> None:
        """Stop without checking anything (a test failed)."""
        self.episodes._stop.set()
        if self.sim.poll() is None:
            self.sim.kill()
            self.sim.wait(10)
        self.episodes._thread.join(30)

    def stop(self) -> int:
        """Stop the simulator (it flushes) and the episodes; return the episodes' cycles."""
        cycles = self.episodes.stop()
        if self.sim.poll() is not None:
            raise AssertionError(f"simulator exited {self.sim.returncode} early:\n{self.log.read_text()[-2000:]}")
        self.sim.send_signal(signal.SIGINT)
        try:
            code = self.sim.wait(60)
        except subprocess.TimeoutExpired:
            self.sim.kill()
            raise
        assert code in (0, 130, -signal.SIGINT), f"simulator exited {code}:\n{self.log.read_text()[-2000:]}"
        return cycles


# --- what went through the broker, what reached the database ------------------------------------


def read_to_end(bootstrap: str, topic: str) -> list[Any]:
    """Every message of ``topic`` up to its end offsets now."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                         "enable.auto.commit": False})
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out, seen = [], dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 120
        while any(seen[p] < ends[p] for p in ends):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for msg in consumer.consume(5000, 0.5):
                offset, partition = msg.offset(), msg.partition()
                if msg.error() is None and offset is not None and partition is not None \
                        and offset < ends[partition]:
                    seen[partition] = offset + 1
                    out.append(msg)
        return out
    finally:
        consumer.close()


def telemetry_event_ids(bootstrap: str) -> list[str]:
    codec = AvroCodec("telemetry")
    return [codec.decode(m.value())["event_id"] for m in read_to_end(bootstrap, TELEMETRY)]


def alert_records(bootstrap: str) -> list[dict[str, Any]]:
    codec = AvroCodec("alert")
    return [codec.decode(m.value()) for m in read_to_end(bootstrap, ALERTS)]


def db_event_ids(db_url: str) -> list[str]:
    with psycopg.connect(db_url, connect_timeout=10) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM ev_telemetry").fetchall()]


def db_alerts(db_url: str) -> list[tuple[str, str, str, Any, str]]:
    """``ev_alerts`` rows: (alert_id, battery_id, rule, opened_at, status)."""
    with psycopg.connect(db_url, connect_timeout=10) as conn:
        return conn.execute("SELECT alert_id, battery_id, rule, opened_at, status FROM ev_alerts").fetchall()


def fresh_rows_since(db_url: str, wall_s: float) -> bool:
    """Whether a reading taken at or after ``wall_s`` (simulator and episodes stamp the wall clock)
    is in ``ev_telemetry``: the pipeline carries new data end to end."""
    try:
        with psycopg.connect(db_url, connect_timeout=3) as conn:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM ev_telemetry WHERE time >= to_timestamp(%s))",
                               (wall_s,)).fetchone()
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):  # down, or the sink not migrated yet
        return False
    return bool(row and row[0])


def assert_exactly_once(up: UpRun, episodes: SyntheticEpisodes, cycles: int) -> dict[str, int]:
    """After the load stopped: every reading on ev.telemetry.v1 is one row of ``ev_telemetry``, every
    episode on ev.alerts.v1 one row of ``ev_alerts`` in its last status, no episode twice, and each
    synthetic battery has one resolved low_soc episode per cycle. Returns the counts."""
    sent = telemetry_event_ids(up.bootstrap)
    assert len(sent) == len(set(sent)), "a reading is twice on ev.telemetry.v1"
    expected = set(sent)

    last: list[list[str]] = [[]]

    def all_rows() -> list[str] | None:
        rows = last[0] = db_event_ids(up.db_url)
        return rows if set(rows) >= expected else None

    try:
        rows = wait("the sink writes every reading", all_rows, 180, up)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {len(expected - set(last[0]))} of {len(expected)} readings "
                             "on ev.telemetry.v1 are not in ev_telemetry") from None
    missing = expected - set(rows)
    assert not missing, f"{len(missing)} readings lost"
    assert len(rows) == len(set(rows)), f"{len(rows) - len(set(rows))} duplicate rows in ev_telemetry"
    assert set(rows) == expected, f"{len(set(rows) - expected)} rows in ev_telemetry that no reading on the topic explains"

    def alerts_match() -> tuple[list[dict[str, Any]], list[tuple[str, str, str, Any, str]]] | None:
        on_topic, in_db = alert_records(up.bootstrap), db_alerts(up.db_url)
        status: dict[str, str] = {}  # RESOLVED once any record resolved the episode
        for a in on_topic:
            status[a["alert_id"]] = "RESOLVED" if a["status"] == "RESOLVED" else status.get(a["alert_id"], "OPENED")
        return (on_topic, in_db) if {r[0]: r[4] for r in in_db} == status else None

    on_topic, in_db = wait("ev_alerts holds every episode of ev.alerts.v1 in its last status", alerts_match, 120, up)
    # A worker taking over partitions may publish an alert change again (at least once), under the
    # same alert_id; one episode under two alert_ids would be two rows.
    ids_of: dict[tuple[str, str, int], set[str]] = {}
    for a in on_topic:
        ids_of.setdefault((a["battery_id"], a["rule"], a["opened_at"]), set()).add(a["alert_id"])
    twice = {k: v for k, v in ids_of.items() if len(v) > 1}
    assert not twice, f"episodes opened twice on ev.alerts.v1 under different alert ids: {twice}"
    resent = len(on_topic) - len({(a["alert_id"], a["status"]) for a in on_topic})
    assert len(in_db) == len({r[0] for r in in_db}), "an alert_id is twice in ev_alerts"
    assert len(in_db) == len({(r[1], r[2], r[3]) for r in in_db}), "an episode is twice in ev_alerts"
    synthetic = [r for r in in_db if r[1] in set(episodes.ids) and r[2] == "low_soc"]
    assert len(synthetic) == cycles * len(episodes.ids), \
        f"{len(synthetic)} low_soc episodes for {cycles} cycles of {len(episodes.ids)} batteries"
    assert all(r[4] == "RESOLVED" for r in synthetic)
    return {"readings": len(sent), "rows": len(rows), "episodes": len(in_db), "synthetic_episodes": len(synthetic),
            "alert_changes_resent": resent}


__all__ = ["Load", "SyntheticEpisodes", "UpRun", "alert_records", "alive", "assert_exactly_once", "db_alerts",
           "db_event_ids", "descendants", "fresh_rows_since", "frozen", "pipeline_pids", "read_to_end",
           "start_up", "stop_up", "telemetry_event_ids", "wait", "wait_all_gone"]
