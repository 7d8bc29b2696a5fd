"""``evtwin up`` supervises its pipeline: a score worker killed under the simulator's load comes
back within the backoff while ``up`` and the other processes keep running, and the database ends
with every event once and every alert episode once; a process that crashes at start-up stops
``up`` with its name, exit status and the lines of its log that say why; crashes beyond the limit
stop ``up`` cleanly, with no process left behind."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from connectors.embedded.process import RUN_MARKER, free_port
from schemas.codec import AvroCodec
from streams.topics import TELEMETRY
from tests.support.pipeline import (
    SyntheticEpisodes,
    UpRun,
    pipeline_pids,
    read_to_end,
    start_up,
    stop_up,
    wait,
    wait_all_gone,
)


@dataclass
class Supervised:
    """The module's ``evtwin up`` and the port of its supervisor's metrics."""

    up: UpRun
    metrics_port: int


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


def _telemetry_keys(bootstrap: str) -> list[tuple[str, int]]:
    """Every reading on ev.telemetry.v1 up to its end offsets now: (battery_id, timestamp)."""
    codec = AvroCodec("telemetry")
    return [(r["battery_id"], r["timestamp"]) for r in (codec.decode(m.value()) for m in read_to_end(bootstrap, TELEMETRY))]


def _restarts_metric(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith("evtwin_process_restarts_total{")}


@pytest.fixture(scope="module")
def supervised_up(state_root: Path, trained_model: Path) -> Iterator[Supervised]:
    """One ``evtwin up`` with two workers under the simulator's load, started once for the
    module; a short start-up grace and one restart allowed in the window."""
    state_dir = state_root / "supervised-up"
    state_dir.mkdir()
    state_dir.chmod(0o755)
    port = free_port()
    up = start_up(state_dir, trained_model, "--workers", "2", "--batteries", "200", "--rate", "2",
                  EVTWIN_SUPERVISE_STARTUP_S="5", EVTWIN_SUPERVISE_BACKOFF_S="1",
                  EVTWIN_SUPERVISE_MAX_RESTARTS="1", EVTWIN_SUPERVISOR_METRICS_PORT=str(port))
    try:
        yield Supervised(up, port)
    finally:
        stop_up(up)


def test_killed_worker_comes_back_and_nothing_is_lost_or_doubled(supervised_up: Supervised) -> None:
    up = supervised_up.up
    db_url, bootstrap = up.stack["database_url"], up.stack["kafka_bootstrap_servers"]
    wanted = {"ingest", "worker-1", "worker-2", "sink", "mqtt-bridge", "simulator", "accuracy"}
    pids = wait("the pipeline starts", lambda: (p := pipeline_pids(up)).keys() >= wanted and p, 60, up)
    wait("rows reach the database", lambda: len(_db_keys(db_url)) > 0, 90, up)
    wait("the accuracy job joins predictions with the truth", lambda: _fleet_pairs(db_url) > 0, 90, up)
    episodes = SyntheticEpisodes(bootstrap, 4, prefix="SUPV")
    time.sleep(3)  # a cycle and a half: an episode is open when the worker dies

    survivor_log = up.logs / "worker-2.log"
    survivor_seen = survivor_log.stat().st_size
    os.kill(pids["worker-1"], signal.SIGKILL)
    killed_at = time.monotonic()
    wait("worker-1 is restarted", lambda: pipeline_pids(up).get("worker-1") not in (None, pids["worker-1"]), 20, up)
    came_back_s = time.monotonic() - killed_at
    assert came_back_s < 1 + 5, f"restarted {came_back_s:.1f} s after the kill; the backoff is 1 s"
    # Meanwhile the surviving replica takes worker-1's partitions.
    wait("worker-2 takes over", lambda: "took over partitions" in survivor_log.read_bytes()[survivor_seen:].decode(
        errors="replace"), 60, up)  # noida-db: up repairs a group stuck in a rebalance after 12 s
    others = {k: v for k, v in pids.items() if k != "worker-1"}
    assert {k: v for k, v in pipeline_pids(up).items() if k != "worker-1"} == others, "another process was restarted"
    assert f"score worker 1 exited unexpectedly (pid {pids['worker-1']}, killed by signal 9 (SIGKILL)" in up.output()

    def rejoined() -> bool:  # the restarted worker took partitions back
        text = (up.logs / "worker-1.log").read_text(errors="replace")
        return "took over partitions" in text.rsplit(RUN_MARKER, 1)[-1]

    wait("the restarted worker takes partitions", rejoined, 60, up)
    time.sleep(2)
    cycles = episodes.stop()
    cut_ms = int(time.time() * 1000)
    assert _restarts_metric(supervised_up.metrics_port) == {"ingest": 0, "worker-1": 1, "worker-2": 0, "sink": 0,
                                                 "mqtt-bridge": 0, "accuracy": 0, "api": 0, "simulator": 0}

    # Every reading on the topic up to the cut is in ev_telemetry exactly once.
    time.sleep(1)
    events = {k for k in _telemetry_keys(bootstrap) if k[1] <= cut_ms}
    assert {b for b, _ in events} >= set(episodes.ids)
    rows = wait("the sink writes every event", lambda: (r := {k for k in _db_keys(db_url) if k[1] <= cut_ms}) >= events and r, 90, up)
    assert rows == events

    # Each alert episode once: the synthetic batteries' exactly, and no episode twice anywhere.
    def low_soc() -> list[tuple]:
        with psycopg.connect(db_url) as conn:
            return conn.execute("SELECT battery_id, status, opened_at FROM ev_alerts WHERE rule = 'low_soc' "
                                "AND battery_id = ANY(%s)", (episodes.ids,)).fetchall()

    def all_resolved() -> list[tuple] | None:
        rows = low_soc()
        return rows if sum(status == "RESOLVED" for _, status, _ in rows) >= cycles * len(episodes.ids) else None

    got = wait("every synthetic episode is resolved in ev_alerts", all_resolved, 60, up)
    assert len(got) == cycles * len(episodes.ids), f"{len(got)} low_soc rows for {cycles} cycles of {len(episodes.ids)} batteries"
    assert len({(b, t) for b, _, t in got}) == len(got)
    with psycopg.connect(db_url) as conn:
        doubled = conn.execute("SELECT battery_id, rule, opened_at, count(*) FROM ev_alerts "
                               "GROUP BY 1, 2, 3 HAVING count(*) > 1").fetchall()
    assert doubled == []
    assert up.proc.poll() is None


def test_crashes_beyond_the_limit_stop_up_cleanly(supervised_up: Supervised) -> None:
    """One restart is allowed in the window: kill worker-1 until ``up`` gives up (twice when this
    test runs alone, once after the test above)."""
    up = supervised_up.up
    wait("worker-1 is past its start-up grace", lambda: "worker-1" in pipeline_pids(up), 60, up)
    time.sleep(5)
    for _ in range(2):
        pid = pipeline_pids(up).get("worker-1")
        if pid is None or up.proc.poll() is not None:
            break
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while up.proc.poll() is None and pipeline_pids(up).get("worker-1") in (None, pid):
            assert time.monotonic() < deadline, "neither restarted nor given up"
            time.sleep(0.1)
    assert up.proc.wait(60) == 1
    err = up.err.read_text()
    assert "evtwin: error: score worker 1 exited 2 times within 300 s, giving up (at most 1 restart(s) in 300 s)" in err
    assert "the last time (killed by signal 9 (SIGKILL)" in err
    wait_all_gone(up.state_dir)
    assert not (up.state_dir / "stack.json").exists()


@contextlib.contextmanager
def _taken_port_with_free_neighbours(neighbours: int) -> Iterator[int]:
    """A listening port below the ephemeral range whose next ``neighbours`` ports are free: ``up``
    gives the sink, the bridge and the rest the ports after the first worker's, and one of them
    taken by chance (a client connection of another test) would crash the wrong process first."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000)
        with contextlib.ExitStack() as probes:
            try:
                for port in range(base, base + neighbours + 1):
                    s = probes.enter_context(socket.socket())
                    s.bind(("0.0.0.0", port))
            except OSError:
                continue
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                taken.bind(("0.0.0.0", base))
            except OSError:
                continue
            taken.listen()
            yield base
            return
    raise AssertionError("no free run of ports found between 20000 and 32000")


def test_crash_at_start_up_stops_up_with_name_status_and_log(state_dir: Path, trained_model: Path) -> None:
    """The first worker's metrics port is taken: it dies at start-up, and ``up`` says so."""
    with _taken_port_with_free_neighbours(4) as port:
        up = start_up(state_dir, trained_model, "--batteries", "20", "--metrics-port", str(port),
                      wait_api=False, EVTWIN_SUPERVISE_STARTUP_S="60")
        try:
            code = up.proc.wait(90)
        finally:
            stop_up(up)
    err = up.err.read_text()
    assert code == 1, up.output()[-3000:]
    headline = next(ln for ln in err.splitlines() if ln.startswith("evtwin: error:"))
    assert headline.startswith("evtwin: error: score worker 1 exited during start-up (exit code 1, ")
    assert str(state_dir / "logs" / "worker-1.log") in headline
    excerpt = err.split(headline, 1)[1]
    assert "Traceback (most recent call last):" in excerpt
    assert "OSError: [Errno 98] Address already in use" in excerpt
    assert "[INFO]" not in excerpt and " INFO " not in excerpt
    wait_all_gone(state_dir)
    assert not (state_dir / "stack.json").exists()
