"""``evtwin bench pipeline``: the score path on the embedded stack, measured in one run against a
naive baseline and a raw relay.

* **pipeline** (1 and 2 replicas): N events are loaded onto the telemetry topic, then ``evtwin
  worker`` replicas score them; events/s from the first to the last prediction (the topic's end
  offsets), CPU µs per event from the workers' CPU time (start-up included), and per stage from the
  workers' ``evtwin_stage_seconds`` metrics (steady state, start-up excluded; ``faust`` is the rest
  of the process's CPU: Faust, the Kafka clients' threads, the metrics endpoint).
* **latency**: one worker runs while the simulator produces at a fixed rate in real time; latency =
  the prediction's create time − the event's time, p50 and p99. Measured once the worker has caught
  up with what was sent while it started; the predictions are read after the run, so no consumer
  of ours competes with the worker meanwhile.
* **naive**: one event at a time, as the seed's predictor does: decode, validate, features of one
  row, scikit-learn-API ``predict`` of each model, encode, produce.
* **relay**: consume → produce of the raw bytes, no work: the ceiling of this broker and client.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import TopicPartition

from connectors import kafka
from connectors.embedded.groups import GroupWatch
from connectors.embedded.process import free_port, stop_processes
from connectors.embedded.stack import EmbeddedStack
from connectors.endpoints import Endpoints
from schemas.codec import AvroCodec
from streams.errors import BenchError
from streams.settings import REPO_ROOT, Settings
from streams.tools.scratch import scratch_state
from streams.topics import PREDICTIONS, TELEMETRY, TopicSpec, topic_specs

RELAY_TOPIC = "bench.relay.v1"
# Stages of the score worker, as its evtwin_stage_seconds metric labels them (see ScoreWorker.handle).
STAGES = ("decode", "validate", "features", "state", "score", "encode", "produce", "alerts", "metrics")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _end_total(consumer: Any, topic: str, partitions: int) -> int:
    return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
               for p in range(partitions))


def _ends(consumer: Any, topic: str, partitions: int) -> list[int]:
    return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)]


def scrape_worker(port: int) -> dict[str, float]:
    """The counters of a worker's /metrics the bench needs: events in, process CPU seconds and
    ``stage:<name>`` CPU seconds per stage."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {"events": 0.0, "cpu": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "evtwin_events_in_total":
                out["events"] += sample.value
            elif sample.name == "process_cpu_seconds_total":
                out["cpu"] = sample.value
            elif sample.name == "evtwin_stage_seconds_total":
                key = "stage:" + sample.labels["stage"]
                out[key] = out.get(key, 0.0) + sample.value
    return out


def stage_costs(before: Sequence[dict[str, float]], after: Sequence[dict[str, float]]) -> dict[str, float]:
    """CPU µs per event of each stage between two scrapes of the same workers, and ``faust`` = the
    rest of their CPU."""
    events = sum(a["events"] - b["events"] for a, b in zip(after, before, strict=True))
    cpu = sum(a["cpu"] - b["cpu"] for a, b in zip(after, before, strict=True))
    out = {}
    for stage in STAGES:
        key = "stage:" + stage
        seconds = sum(a.get(key, 0.0) - b.get(key, 0.0) for a, b in zip(after, before, strict=True))
        out[f"{stage}_us_per_event"] = seconds / max(events, 1) * 1e6
    out["faust_us_per_event"] = max(0.0, cpu / max(events, 1) * 1e6 - sum(out.values()))
    out["steady_cpu_us_per_event"] = cpu / max(events, 1) * 1e6
    return out


def load_events(bootstrap: str, n_events: int, batteries: int, rate_hz: float = 1.0,
                realtime: bool = False, stop: threading.Event | None = None) -> None:
    """Put ``n_events`` simulator readings on the telemetry topic (0 = until ``stop`` is set)."""
    from models.physics.fleet import Fleet
    from streams.sources.simulator import FleetSimulator

    fleet = Fleet(batteries, seed=1, start_time_s=time.time())
    sim = FleetSimulator(fleet, kafka.producer(bootstrap), AvroCodec("telemetry"), None, rate_hz, 24.0)
    sim.run(stop or threading.Event(), max_events=n_events, realtime=realtime)


def check_workers(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Raise :class:`BenchError` with the end of its log as soon as a worker has exited (a bench
    would otherwise wait its whole timeout for output that cannot come)."""
    for proc in procs:
        if proc.poll() is not None:
            log = Path(getattr(proc, "log_path", ""))
            tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else []
            raise BenchError(f"a worker exited with status {proc.returncode} (log: {log}): "
                             + " | ".join(line[:300] for line in tail))


def wait_output(bootstrap: str, topic: str, partitions: int, target: int, timeout_s: float,
                on_first: Callable[[], None] | None = None,
                procs: Sequence[subprocess.Popen[bytes]] = (),
                watch: GroupWatch | None = None) -> tuple[float, float, int]:
    """Poll the end offsets of ``topic`` until they sum to ``target``; return the times of the
    first growth and of reaching the target, and the total reached. ``on_first`` is called at the
    first growth; a process of ``procs`` exiting meanwhile raises :class:`BenchError`; ``watch``
    clears the workers' group when noida-db leaves it stuck in a rebalance (as ``evtwin up`` does)."""
    consumer = kafka.consumer(bootstrap, "bench-watch")
    try:
        start_total = _end_total(consumer, topic, partitions)
        first = 0.0
        deadline = time.monotonic() + timeout_s
        total = start_total
        while total < target and time.monotonic() < deadline:
            check_workers(procs)
            if watch is not None:
                watch.check()
            time.sleep(0.02)
            total = _end_total(consumer, topic, partitions)
            if total > start_total and not first:
                first = time.monotonic()
                if on_first is not None:
                    on_first()
        return first, time.monotonic(), total
    finally:
        consumer.close()


def start_workers(state_dir: Path, n: int, model_dir: Path, app_id: str,
                  metrics_ports: Sequence[int] = ()) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` ``evtwin worker`` processes against the stack in ``state_dir``; worker i serves
    its metrics on ``metrics_ports[i]`` (none without)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVTWIN_")}
    env.update(EVTWIN_STATE_DIR=str(state_dir), EVTWIN_MODEL_DIR=str(model_dir),
               EVTWIN_APP_ID=app_id, EVTWIN_LOG_LEVEL="WARNING")
    ports = list(metrics_ports) or [0] * n
    procs = []
    for i in range(n):
        log = state_dir / f"{app_id}-{i}.log"
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                env={**env, "EVTWIN_METRICS_PORT": str(ports[i])}, cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=open(log, "wb"))  # noqa: SIM115
        proc.log_path = log  # type: ignore[attr-defined]  # for check_workers
        procs.append(proc)
    return procs


def bench_workers(ep: Endpoints, state_dir: Path, model_dir: Path, n_events: int,
                  replicas: int, partitions: int, progress: Any = print) -> dict[str, float]:
    """Throughput and CPU per event of ``replicas`` workers over the events on the topic, and the
    CPU per event of each stage (from the workers' metrics, between the first prediction and the
    last). ``group_repairs`` counts the times noida-db left the workers' group stuck in a
    rebalance and the bench cleared it (the throughput then includes that wait)."""
    consumer = kafka.consumer(ep.kafka_bootstrap_servers, "bench-before")
    before = _end_total(consumer, PREDICTIONS, partitions)
    consumer.close()
    ports = [free_port() for _ in range(replicas)]
    group = f"bench-{replicas}-replicas"
    procs = start_workers(state_dir, replicas, model_dir, group, ports)
    watch = GroupWatch(ep.kafka_bootstrap_servers, [group], report=progress)
    scrapes: list[list[dict[str, float]]] = []

    def scrape() -> None:
        try:
            scrapes.append([scrape_worker(port) for port in ports])
        except OSError:  # an endpoint did not answer: no stage costs, the other figures stand
            scrapes.append([])

    try:
        cpu0 = {p.pid: _cpu_seconds(p.pid) for p in procs}
        first, last, total = wait_output(ep.kafka_bootstrap_servers, PREDICTIONS, partitions,
                                         before + n_events, 600, on_first=scrape, procs=procs, watch=watch)
        cpu = sum(_cpu_seconds(p.pid) - cpu0[p.pid] for p in procs)
        # The last batch's counters follow its flush (and on a busy machine, by more than a moment):
        # scrape until the workers count every event in, then once more for the stage counters.
        deadline = time.monotonic() + 15.0
        while True:
            time.sleep(0.3)
            scrape()
            counted = sum(s["events"] for s in scrapes[-1]) if scrapes[-1] else n_events
            if counted >= n_events or time.monotonic() > deadline:
                break
            scrapes.pop()
        time.sleep(0.2)
        scrapes.pop()
        scrape()
    finally:
        watch.close()
        stop_processes(procs)
    scored = total - before
    if scored < n_events:
        raise BenchError(f"{replicas} worker(s) scored only {scored:,} of {n_events:,} events in 600 s "
                         f"(logs: {state_dir}/bench-{replicas}-replicas-*.log)")
    stages = stage_costs(scrapes[0], scrapes[-1]) if len(scrapes) == 2 and all(scrapes) else {}
    return {"events": scored, "events_per_s": scored / max(last - first, 1e-9),
            "cpu_us_per_event": cpu / max(scored, 1) * 1e6, "group_repairs": watch.cleared, **stages}


def _skip_to_end(bootstrap: str, group: str, partitions: int) -> None:
    """Commit the end of the telemetry topic for ``group``, so its workers start at new events."""
    consumer = kafka.consumer(bootstrap, group)
    try:
        offsets = [TopicPartition(TELEMETRY, p, consumer.get_watermark_offsets(
            TopicPartition(TELEMETRY, p), timeout=10)[1]) for p in range(partitions)]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def bench_latency(ep: Endpoints, state_dir: Path, model_dir: Path, rate: int,
                  seconds: float, partitions: int) -> dict[str, float]:
    """p50/p99 event-to-prediction latency of one worker at ``rate`` events/s.

    While the worker starts (imports, model, group join: seconds) the simulator already sends, so
    it starts behind; the events of the measurement are sent only once it has caught up, or the
    figure would be the start-up backlog draining. During the measurement the bench process runs
    only the simulator and polls end offsets (no fetches): the predictions are read afterwards, so
    a consumer of ours takes neither the simulator's GIL nor CPU from the worker and the broker
    (noida-db answers empty fetches at once: an idle consumer spins). The latency comes from
    timestamps only: the event's time and the prediction's create time (the worker's producer).
    """
    bootstrap = ep.kafka_bootstrap_servers
    _skip_to_end(bootstrap, "bench-latency", partitions)
    watch = kafka.consumer(bootstrap, "bench-latency-watch")  # end offsets only, never assigned
    sent0, scored0 = _end_total(watch, TELEMETRY, partitions), _end_total(watch, PREDICTIONS, partitions)
    procs = start_workers(state_dir, 1, model_dir, "bench-latency")
    batteries = max(1, rate // 5)
    try:
        # Warm-up at the same rate until predictions flow (the worker has joined its group and
        # loaded its model) and 3 s more, then until every event sent so far is scored.
        stop_warmup = threading.Event()
        warmup = threading.Thread(target=load_events, args=(bootstrap, 0, batteries, rate / batteries,
                                                            True, stop_warmup))
        warmup.start()
        flowing, deadline = 0.0, time.monotonic() + 90
        try:
            while time.monotonic() < min(deadline, (flowing or deadline) + 3):
                check_workers(procs)
                time.sleep(0.1)
                if not flowing and _end_total(watch, PREDICTIONS, partitions) > scored0:
                    flowing = time.monotonic()
        finally:
            stop_warmup.set()
            warmup.join()
        if not flowing:
            raise BenchError(f"the worker scored nothing in 90 s (log: {state_dir / 'bench-latency-0.log'})")
        backlog = _end_total(watch, TELEMETRY, partitions) - sent0
        deadline = time.monotonic() + 120
        while _end_total(watch, PREDICTIONS, partitions) - scored0 < backlog:
            check_workers(procs)
            if time.monotonic() > deadline:
                raise BenchError("the worker did not catch up with the warm-up in 120 s "
                                 f"(log: {state_dir / 'bench-latency-0.log'})")
            time.sleep(0.05)
        start = _ends(watch, PREDICTIONS, partitions)
        measured_from = int(time.time() * 1000)
        n_events = int(rate * seconds)
        load_events(bootstrap, n_events, batteries, rate / batteries, True)
        deadline = time.monotonic() + 30
        while (_end_total(watch, PREDICTIONS, partitions) - sum(start) < n_events
               and time.monotonic() < deadline):
            time.sleep(0.05)
        end = _ends(watch, PREDICTIONS, partitions)
    finally:
        watch.close()
        stop_processes(procs)
    latencies = _read_latencies(bootstrap, partitions, start, end, measured_from)
    arr = np.asarray(latencies or [float("nan")])
    return {"rate": rate, "events": len(latencies), "p50_ms": float(np.percentile(arr, 50)),
            "p99_ms": float(np.percentile(arr, 99))}


def _read_latencies(bootstrap: str, partitions: int, start: list[int], end: list[int],
                    measured_from: int) -> list[float]:
    """Prediction create time − event time, ms, of the predictions in [start, end) per partition
    whose event was sent at or after ``measured_from``."""
    codec = AvroCodec("prediction")
    consumer = kafka.consumer(bootstrap, "bench-latency-reader")
    consumer.assign([TopicPartition(PREDICTIONS, p, start[p]) for p in range(partitions) if end[p] > start[p]])
    latencies: list[float] = []
    remaining, deadline = sum(end) - sum(start), time.monotonic() + 60
    try:
        while remaining > 0 and time.monotonic() < deadline:
            for msg in consumer.consume(10000, 0.5):
                if msg.error() or (msg.offset() or 0) >= end[msg.partition() or 0]:
                    continue
                remaining -= 1
                event_ms = codec.decode(msg.value())["timestamp"]
                if event_ms >= measured_from:
                    latencies.append(msg.timestamp()[1] - event_ms)
    finally:
        consumer.close()
    return latencies


def bench_relay(bootstrap: str, n_events: int) -> dict[str, float]:
    """Consume → produce the raw telemetry bytes to another topic: the broker's ceiling."""
    consumer = kafka.consumer(bootstrap, "bench-relay")
    consumer.subscribe([TELEMETRY])
    producer = kafka.producer(bootstrap)
    done, start, cpu0 = 0, 0.0, time.process_time()
    deadline = time.monotonic() + 300
    while done < n_events and time.monotonic() < deadline:
        for msg in consumer.consume(10000, 0.2):
            if msg.error():
                continue
            start = start or time.monotonic()
            producer.produce(RELAY_TOPIC, msg.value(), msg.key())
            done += 1
        producer.poll(0)
    producer.flush(30)
    seconds, cpu = time.monotonic() - start, time.process_time() - cpu0
    consumer.close()
    return {"events": done, "events_per_s": done / seconds, "cpu_us_per_event": cpu / done * 1e6}


def bench_naive(bootstrap: str, model_dir: Path, n_events: int) -> dict[str, float]:
    """One event at a time with scikit-learn-API predict calls, as the seed's predictor."""
    from streams.tools.naive import NaivePredictor

    naive = NaivePredictor(model_dir)
    consumer = kafka.consumer(bootstrap, "bench-naive")
    consumer.subscribe([TELEMETRY])
    producer = kafka.producer(bootstrap)
    done, start, cpu0 = 0, 0.0, time.process_time()
    deadline = time.monotonic() + 300
    while done < n_events and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        start = start or time.monotonic()
        producer.produce(PREDICTIONS + ".naive", naive.handle(msg.value() or b""), msg.key())
        producer.poll(0)
        done += 1
    producer.flush(30)
    seconds, cpu = time.monotonic() - start, time.process_time() - cpu0
    consumer.close()
    return {"events": done, "events_per_s": done / seconds, "cpu_us_per_event": cpu / done * 1e6}


def run_pipeline_bench(model_dir: Path, events: int, batteries: int, naive_events: int,
                       latency_rate: int, latency_seconds: float, partitions: int,
                       progress: Any = print) -> dict[str, Any]:
    """Run every phase on a fresh embedded stack; return one flat result object."""
    with scratch_state("evtwin-bench-") as state:
        settings = Settings(state_dir=state, embedded_kafka_port=0, database_url="postgresql://unused",
                            mqtt_url="mqtt://unused:1", topic_partitions=partitions)
        with EmbeddedStack(settings) as ep:
            bootstrap = ep.kafka_bootstrap_servers
            specs = [*topic_specs(partitions),
                     TopicSpec(RELAY_TOPIC, "telemetry", partitions, 3600_000, "delete", "bench relay"),
                     TopicSpec(PREDICTIONS + ".naive", "prediction", partitions, 3600_000, "delete", "bench naive")]
            kafka.ensure_topics(bootstrap, specs)
            progress(f"loading {events:,} events from {batteries:,} packs…")
            load_events(bootstrap, events, batteries)
            progress("relay…")
            relay = bench_relay(bootstrap, events)
            progress("pipeline, 1 replica…")
            one = bench_workers(ep, state, model_dir, events, 1, partitions, progress)
            progress("pipeline, 2 replicas…")
            two = bench_workers(ep, state, model_dir, events, 2, partitions, progress)
            progress(f"naive baseline, {naive_events:,} events…")
            naive = bench_naive(bootstrap, model_dir, naive_events)
            progress(f"latency at {latency_rate:,} events/s for {latency_seconds:g} s…")
            latency = bench_latency(ep, state, model_dir, latency_rate, latency_seconds, partitions)
        return {
            "events": events, "batteries": batteries, "partitions": partitions,
            "events_per_s": one["events_per_s"], "cpu_us_per_event": one["cpu_us_per_event"],
            "two_replicas_events_per_s": two["events_per_s"],
            "p50_ms": latency["p50_ms"], "p99_ms": latency["p99_ms"], "latency_rate": latency_rate,
            "naive_events_per_s": naive["events_per_s"], "naive_cpu_us_per_event": naive["cpu_us_per_event"],
            "relay_events_per_s": relay["events_per_s"], "relay_cpu_us_per_event": relay["cpu_us_per_event"],
            "speedup_vs_naive": one["events_per_s"] / naive["events_per_s"],
            "group_repairs": one["group_repairs"] + two["group_repairs"],
            # CPU µs per event of each stage of one replica, steady state (see bench_workers).
            **{k: v for k, v in one.items() if k.endswith("_us_per_event") and k != "cpu_us_per_event"},
        }


__all__ = ["BenchError", "run_pipeline_bench"]
