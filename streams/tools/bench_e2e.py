"""``evtwin bench e2e``: the whole pipeline on a fresh embedded stack, at a fixed fleet size and
rate for a fixed time — simulator → broker → score workers → database sink and MQTT bridge.

Every figure comes from what the pipeline left behind, not from the pipeline's own counters:

* **events sent**: the telemetry topic's end offsets (the simulator is the only producer).
* **rows**: ``ev_telemetry`` after the pipeline drained; ``rows_lost`` = events sent without a row
  (by ``event_id``), ``rows_duplicated`` = rows beyond one per event id.
* **throughput to the database**: rows *committed* during the measurement window (the embedded
  PostgreSQL tracks commit timestamps: ``pg_xact_commit_timestamp(xmin)``) per second; it equals the
  send rate only when the pipeline keeps up, which ``backlog_at_end`` (events sent but not yet in
  the table when the simulator stopped) and ``drain_s`` show.
* **telemetry → row latency**: commit time − the reading's event time, p50/p99 over the window's rows.
* **telemetry → MQTT latency**: receipt time of ``ev/battery/<id>/state`` − the reading's event time,
  for a sample of packs (a subscriber of every pack would compete for the CPU it measures).
* **CPU and memory per process**: CPU cores used during the window (``/proc/<pid>/stat``, the
  process and its children) and peak RSS (``VmHWM``).

The warm-up (group joins, model loads) is not measured: the window starts ``warmup_s`` after the
simulator does. The simulator publishes no ground truth unless asked (``ground_truth``): a fleet in
service has none, and its consumer (the online accuracy job of ``evtwin up``) is not part of this
pipeline; with it, the simulator writes two records per event and the broker stores both. It
sends each second's readings in ``slices`` parts spread over the second (packs at their own phase,
see :mod:`streams.sources.simulator`); ``slices`` 1 sends the whole fleet at one instant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import TopicPartition

from connectors import kafka
from connectors.embedded.groups import GroupWatch
from connectors.embedded.process import stop_processes
from connectors.embedded.stack import EmbeddedStack
from streams.errors import BenchError
from streams.settings import REPO_ROOT, Settings
from streams.tools.scratch import scratch_state
from streams.topics import TELEMETRY, topic_specs

MQTT_SAMPLE = 50  # packs whose state messages the bench subscribes to
TIMELINE_S = 10  # seconds per slot of the latency timeline
STALL_S = 90.0  # no new row for this long while draining: the pipeline is stuck
JOIN_RESTARTS = 3  # times a process that exits while the groups join is started again


def _proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (PostgreSQL is one process per connection)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in _proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _peak_rss_mb(pid: int) -> float:
    total = 0.0
    for p in _proc_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def _end_total(consumer: Any, partitions: int) -> int:
    return sum(consumer.get_watermark_offsets(TopicPartition(TELEMETRY, p), timeout=10)[1]
               for p in range(partitions))


class MqttSample:
    """Receives the state messages of a few packs and keeps receipt time − event time, ms."""

    def __init__(self, url: str, battery_ids: list[str]) -> None:
        import paho.mqtt.client as mqtt

        from connectors.mqtt_publisher import mqtt_endpoint

        endpoint = mqtt_endpoint(url)
        self.latencies: list[tuple[float, float]] = []  # (receipt time s, latency ms)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="evtwin-bench-e2e")
        endpoint.configure(self.client)
        self.client.on_message = self._on_message
        topics = [(f"ev/battery/{b}/state", 0) for b in battery_ids]
        self.client.on_connect = lambda c, *_: c.subscribe(topics)
        self.client.connect(endpoint.host, endpoint.port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.retain:  # a retained copy from before: not a delivery
            return
        now = time.time()
        try:
            stamp = json.loads(msg.payload)["timestamp"]
            event_ms = (datetime.fromisoformat(stamp).timestamp() * 1000 if isinstance(stamp, str)
                        else float(stamp))  # ISO text or epoch ms
        except (ValueError, KeyError, TypeError):
            return
        self.latencies.append((now, now * 1000 - event_ms))

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", *argv], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(logs / f"{name}.log", "ab"))  # noqa: SIM115
    proc.bench_name = name  # type: ignore[attr-defined]
    proc.bench_start = (argv, env)  # type: ignore[attr-defined]
    return proc


def _restart_exited(procs: list[subprocess.Popen[bytes]], logs: Path, restarts: dict[str, int],
                    watch: GroupWatch, group_of: dict[str, str], progress: Any) -> None:
    """Start again, in place, a process of ``procs`` that exited (at most :data:`JOIN_RESTARTS`
    times each), as ``evtwin up``'s supervisor does: noida-db now and then answers a group join
    with a SyncGroup that aiokafka cannot decode, and the process exits on purpose; its group
    is cleared first (noida-db keeps a dead member). Only while the groups join, before anything
    is measured."""
    for i, proc in enumerate(procs):
        if proc.poll() is None:
            continue
        name = getattr(proc, "bench_name", "?")
        if restarts.get(name, 0) >= JOIN_RESTARTS:
            _check([proc], logs)  # raises with the log's tail
        restarts[name] = restarts.get(name, 0) + 1
        progress(f"{name} exited with status {proc.returncode} while joining; starting it again "
                 f"({restarts[name]} of {JOIN_RESTARTS}; log: {logs / name}.log)")
        group = group_of.get(name.split("-")[0] if name.startswith("worker-") else name)
        if group is not None:
            watch.clear(group, f"{name} died in it")
        argv, env = proc.bench_start  # type: ignore[attr-defined]
        procs[i] = _start(name, argv, env, logs)


def _check(procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
    for proc in procs:
        if proc.poll() is not None:
            name = getattr(proc, "bench_name", "?")
            tail = (logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-5:]
            raise BenchError(f"{name} exited with status {proc.returncode} (log: {logs / name}.log): "
                             + " | ".join(line[:300] for line in tail))


def _wait(until: float, procs: list[subprocess.Popen[bytes]], watch: GroupWatch, logs: Path) -> None:
    """Sleep until ``until`` (monotonic), failing at once if a process exits; unstick groups."""
    while time.monotonic() < until:
        _check(procs, logs)
        watch.check()
        time.sleep(min(0.5, max(0.0, until - time.monotonic())))


def _wait_joined(watch: GroupWatch, members: dict[str, int], procs: list[subprocess.Popen[bytes]],
                 logs: Path, bootstrap: str, group_of: dict[str, str], timeout_s: float = 240.0,
                 progress: Any = print) -> None:
    """Wait until every consumer group is stable with its expected number of members; a process
    that exits meanwhile is started again in ``procs`` (:func:`_restart_exited`; ``group_of``:
    process name, ``worker`` for the workers, → its consumer group)."""
    from connectors.embedded.groups import group_member_ids

    deadline = time.monotonic() + timeout_s
    restarts: dict[str, int] = {}
    while time.monotonic() < deadline:
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            _restart_exited(procs, logs, restarts, watch, group_of, progress)
            watch.check()
            time.sleep(0.25)
        try:
            states = watch.states()
            if all(states.get(g) == "STABLE" and len(group_member_ids(bootstrap, g)) == n
                   for g, n in members.items()):
                return
        except Exception:  # the broker is busy (ConnectorError, KafkaException…): ask again
            continue
    raise BenchError(f"the consumer groups {sorted(members)} did not all join in {timeout_s:.0f} s "
                     f"(logs: {logs})")


def run_e2e_bench(model_dir: Path, batteries: int, rate_hz: float, seconds: float, workers: int,
                  partitions: int, warmup_s: float = 30.0, ground_truth: bool = False, *,
                  slices: int, progress: Any = print) -> dict[str, Any]:
    """Run the pipeline for ``warmup_s`` + ``seconds`` at ``batteries`` × ``rate_hz`` events/s on a
    fresh embedded stack; return one flat result object (see the module docstring). With
    ``ground_truth`` the simulator also publishes the true state (one more record per event)."""
    import psycopg

    with scratch_state("evtwin-bench-e2e-") as state:
        logs = state / "logs"
        logs.mkdir()
        settings = Settings(state_dir=state, embedded_kafka_port=0, embedded_postgres_port=0,
                            embedded_mqtt_port=0, embedded_schema_registry_port=0,
                            topic_partitions=partitions)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVTWIN_")}
        env.update(EVTWIN_STATE_DIR=str(state), EVTWIN_MODEL_DIR=str(model_dir), EVTWIN_LOG_LEVEL="WARNING",
                   EVTWIN_TOPIC_PARTITIONS=str(partitions), EVTWIN_METRICS_PORT="0",
                   EVTWIN_SIM_GROUND_TRUTH="1" if ground_truth else "0")
        with EmbeddedStack(settings) as ep:
            bootstrap = ep.kafka_bootstrap_servers
            assert ep.mqtt_url and ep.database_url  # the embedded stack runs both
            kafka.ensure_topics(bootstrap, topic_specs(partitions))
            progress(f"starting {workers} worker(s), the database sink and the MQTT bridge…")
            consumers = [_start(f"worker-{i}", ["worker"], env, logs) for i in range(workers)]
            consumers += [_start("sink", ["sink"], env, logs), _start("mqtt-bridge", ["mqtt-bridge"], env, logs)]
            groups = [settings.app_id, settings.sink_app_id, settings.bridge_app_id]
            watch = GroupWatch(bootstrap, groups, report=progress)
            ids = [f"BATTERY_{k:0{max(4, len(str(batteries)))}d}" for k in
                   np.linspace(1, batteries, min(MQTT_SAMPLE, batteries)).astype(int)]
            mqtt = MqttSample(ep.mqtt_url, ids)
            offsets = kafka.consumer(bootstrap, "bench-e2e-watch")  # end offsets only, never assigned
            procs = consumers  # the same list: a process started again during the join replaces its entry
            try:
                _wait_joined(watch, {settings.app_id: workers, settings.sink_app_id: 1,
                                     settings.bridge_app_id: 1}, consumers, logs, bootstrap,
                             {"worker": settings.app_id, "sink": settings.sink_app_id,
                              "mqtt-bridge": settings.bridge_app_id}, progress=progress)
                procs = list(consumers)
                pids = {getattr(p, "bench_name", "?"): p.pid for p in consumers}
                pids.update({name: s["pid"] for name, s in ep.services.items() if s.get("pid")})
                sim = _start("simulator", ["simulate", "--batteries", str(batteries), "--rate", str(rate_hz),
                                           "--slices", str(slices), "--no-commands"], env, logs)
                procs.append(sim)
                pids["simulator"] = sim.pid
                progress(f"{batteries:,} packs at {rate_hz:g} Hz: warm-up {warmup_s:g} s, then {seconds:g} s measured…")
                _wait(time.monotonic() + warmup_s, procs, watch, logs)
                w0, cpu0, sent0 = time.time(), {n: _cpu_seconds(p) for n, p in pids.items()}, _end_total(offsets, partitions)
                _wait(time.monotonic() + seconds, procs, watch, logs)
                w1, cpu1 = time.time(), {n: _cpu_seconds(p) for n, p in pids.items()}
                sim_peak = _peak_rss_mb(sim.pid)
                stop_processes([sim])
                sent = _end_total(offsets, partitions)
                with psycopg.connect(ep.database_url, autocommit=True) as conn:
                    rows_at_end = conn.execute("SELECT count(*) FROM ev_telemetry").fetchone()[0]  # type: ignore[index]
                    progress(f"sent {sent:,} events; draining {sent - rows_at_end:,}…")
                    # Drain as long as rows keep arriving (a backlog of millions takes minutes); a
                    # pipeline that writes nothing for STALL_S is stuck, which is an error.
                    drain_started, rows = time.monotonic(), rows_at_end
                    progressed = drain_started
                    while rows < sent and time.monotonic() < progressed + STALL_S:
                        _wait(time.monotonic() + 2.0, consumers, watch, logs)
                        now_rows = conn.execute("SELECT count(*) FROM ev_telemetry").fetchone()[0]  # type: ignore[index]
                        if now_rows > rows:
                            rows, progressed = now_rows, time.monotonic()
                    drain_s = time.monotonic() - drain_started
                    if rows < sent:
                        raise BenchError(f"the pipeline stopped writing: {rows:,} of {sent:,} events in the "
                                         f"table, none for {STALL_S:.0f} s (logs: {logs})")
                    time.sleep(2.0)  # the bridge's last state messages
                    result = _read_table(conn, w0, w1)
                peak = {n: _peak_rss_mb(p) for n, p in pids.items()}  # VmHWM: the high-water mark
                peak["simulator"] = sim_peak
            finally:
                mqtt.stop()
                offsets.close()
                watch.close()
                stop_processes(procs)
        window = w1 - w0
        mqtt_window = np.asarray([ms for t, ms in mqtt.latencies if w0 <= t <= w1] or [float("nan")])
        out: dict[str, Any] = {
            "batteries": batteries, "rate_hz": rate_hz, "workers": workers, "partitions": partitions,
            "ground_truth": ground_truth, "slices": slices,
            "seconds": round(window, 1), "events_sent": sent,
            "send_events_per_s": (sent - sent0) / window,
            "events_per_s": result["committed_in_window"] / window,
            "rows": result["rows"], "rows_lost": sent - result["distinct_events"],
            "rows_duplicated": result["rows"] - result["distinct_events"],
            "backlog_at_end": sent - rows_at_end, "drain_s": drain_s,
            "row_p50_ms": result["p50_ms"], "row_p99_ms": result["p99_ms"],
            "row_timeline_s": TIMELINE_S, "row_p99_ms_timeline": result["p99_ms_per_slot"],
            "row_max_ms_timeline": result["max_ms_per_slot"],
            "mqtt_p50_ms": float(np.percentile(mqtt_window, 50)),
            "mqtt_p99_ms": float(np.percentile(mqtt_window, 99)), "mqtt_messages": int(mqtt_window.size),
        }
        for name in sorted(pids):
            out[f"cpu_cores.{name}"] = (cpu1[name] - cpu0[name]) / window
            out[f"peak_rss_mb.{name}"] = peak[name]
        return out


def _read_table(conn: Any, w0: float, w1: float) -> dict[str, Any]:
    """Rows, distinct events, rows committed in [w0, w1] and their latency percentiles, also per
    :data:`TIMELINE_S` of the window (where a tail comes from: a stall, or a backlog growing)."""
    rows, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM ev_telemetry").fetchone()
    # One pass over the window's rows: the whole window (slot NULL) and each slot.
    found = conn.execute(
        """
        WITH c AS (SELECT floor((extract(epoch FROM committed) - %s) / %s)::int AS slot,
                          extract(epoch FROM committed - time) AS latency
                   FROM (SELECT pg_xact_commit_timestamp(xmin) AS committed, time FROM ev_telemetry) t
                   WHERE committed >= to_timestamp(%s) AND committed < to_timestamp(%s))
        SELECT slot, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY latency),
               percentile_cont(0.99) WITHIN GROUP (ORDER BY latency), max(latency)
        FROM c GROUP BY GROUPING SETS ((slot), ()) ORDER BY slot NULLS FIRST
        """, (w0, TIMELINE_S, w0, w1)).fetchall()
    _, committed, p50, p99, _ = found[0]  # the whole window (one row even when it is empty)
    if committed and p50 is None:
        raise BenchError("PostgreSQL does not track commit timestamps (track_commit_timestamp=off)")
    slots = found[1:]
    return {"rows": rows, "distinct_events": distinct, "committed_in_window": committed,
            "p50_ms": float(p50 or float("nan")) * 1000, "p99_ms": float(p99 or float("nan")) * 1000,
            "p99_ms_per_slot": [round(float(p) * 1000) for _, _, _, p, _ in slots],
            "max_ms_per_slot": [round(float(m) * 1000) for _, _, _, _, m in slots]}


__all__ = ["run_e2e_bench"]
