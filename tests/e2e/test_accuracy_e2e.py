"""End to end: `evtwin sink --kind accuracy` on its own embedded stack (broker and PostgreSQL) joins
the predictions and the ground truth produced to their topics. The ev_accuracy rows and the
evtwin_online_* metrics on its endpoint equal what this test computes from the records it produced;
a prediction and a truth without a partner are counted as unmatched; an undecodable truth and one
with a NaN RUL go to ev.groundtruth.dlq.v1 with their reasons, and the job goes on. The ground-truth
sink, beside it in its own group, writes every good truth to ev_ground_truth and dead-letters the
same two."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors import kafka
from connectors.embedded.process import free_port, stop_processes
from connectors.embedded.stack import EmbeddedStack
from connectors.endpoints import Endpoints
from connectors.kafka import ensure_topics
from streams.runtime.codecs import codec_for
from streams.scoring.deadletter import HEADER_REASON
from streams.topics import GROUND_TRUTH, GROUND_TRUTH_DLQ, PREDICTIONS, topic_specs
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO
from tests.support.receivers import wait_until
from tests.support.sink_records import prediction
from tests.support.stack_settings import free_port_settings
from tests.support.topic_reader import read_topic

BUCKET_S, WINDOW_S, JOIN_S = 60, 120, 30
READINGS, STEP_S = 36, 5  # per battery: 3 minutes of readings, so 3-4 buckets


@pytest.fixture
def own_stack(state_dir: Path) -> Iterator[tuple[Path, Endpoints]]:
    """A broker and a PostgreSQL of this test alone: the fleet-wide figures are its records' only."""
    settings = free_port_settings(state_dir)
    with EmbeddedStack(settings) as ep:
        ensure_topics(ep.kafka_bootstrap_servers, topic_specs(settings.topic_partitions))
        yield state_dir, ep


def _records(prefix: str, start_ms: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predictions and truths of 3 batteries; battery 2 gets a cooling failure at reading 10 that
    the twin's fault flag marks from reading 14 on (with an anomaly score of 0.9, which alone would
    not flag it: the flag is what counts)."""
    rng = random.Random(11)
    preds, truths = [], []
    for b in range(3):
        battery = f"{prefix}{b}"
        for k in range(READINGS):
            t = start_ms + k * STEP_S * 1000 + b
            rul = 800.0 - 2 * k
            faulty = b == 2 and k >= 10
            p = prediction(battery, t, rul_cycles=rul, rul_p10=rul - 20, rul_p90=rul + 20,
                           anomaly_score=0.9 if b == 2 and k >= 10 else 0.1, seq=k,
                           fault_score=0.6 if b == 2 and k >= 14 else 0.1, fault_flag=b == 2 and k >= 14,
                           failure_probability=0.6 if b == 2 and k >= 12 else 0.05)
            preds.append(p)
            truths.append({"event_id": p["event_id"], "battery_id": battery, "timestamp": t, "true_soh": 90.0,
                           "true_rul_cycles": rul + rng.uniform(-40, 40), "failure_within_horizon": faulty,
                           "fault": "cooling_failure" if faulty else "none", "capacity_ah": 95.0, "r0_ohm": 0.05})
    return preds, truths


def _expected(preds: list[dict[str, Any]], truths: list[dict[str, Any]]) -> dict[tuple[int, str], list[float]]:
    """Per (bucket start ms, battery or '*'): [pairs, error sum, in band, detections, delay sum]."""
    by_event = {t["event_id"]: t for t in truths}
    rows: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0, 0, 0, 0.0])
    onset = {t["battery_id"]: t["timestamp"] for t in sorted(truths, key=lambda t: -t["timestamp"])
             if t["fault"] != "none"}
    detected: set[str] = set()
    for p in sorted(preds, key=lambda p: p["timestamp"]):
        t = by_event[p["event_id"]]
        bucket = p["timestamp"] - p["timestamp"] % (BUCKET_S * 1000)
        delay = None
        if t["fault"] != "none" and p["fault_flag"] and p["battery_id"] not in detected:
            detected.add(p["battery_id"])
            delay = (p["timestamp"] - onset[p["battery_id"]]) / 1000
        for key in (p["battery_id"], "*"):
            row = rows[(bucket, key)]
            row[0] += 1
            row[1] += abs(p["rul_cycles"] - t["true_rul_cycles"])
            row[2] += p["rul_p10"] <= t["true_rul_cycles"] <= p["rul_p90"]
            if delay is not None:
                row[3] += 1
                row[4] += delay
    return rows


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_accuracy_job_measures_what_the_records_say(own_stack: tuple[Path, Endpoints]) -> None:
    state_dir, ep = own_stack
    prefix = f"ACC{uuid.uuid4().hex[:4]}_"
    start_ms = (int(time.time()) // BUCKET_S - 4) * BUCKET_S * 1000  # a bucket start, 4 minutes ago
    preds, truths = _records(prefix, start_ms)
    # Without a partner: a prediction and a truth of battery 0, early enough to be passed by the window.
    orphan_p = prediction(f"{prefix}0", start_ms + 2000, rul_cycles=1.0, rul_p10=0.0, rul_p90=2.0)
    orphan_t = dict(truths[0], event_id=str(uuid.uuid4()), timestamp=start_ms + 3000)

    port = free_port()
    env = cli_env(state_dir, EVTWIN_METRICS_PORT=str(port), EVTWIN_ACCURACY_BUCKET_S=str(BUCKET_S),
                  EVTWIN_ACCURACY_WINDOW_S=str(WINDOW_S), EVTWIN_ACCURACY_JOIN_WINDOW_S=str(JOIN_S))
    log_path = state_dir / "accuracy.log"
    with open(log_path, "wb") as log:
        job = subprocess.Popen(EVTWIN + ["sink", "--kind", "accuracy"], env=env, cwd=REPO, stdout=log, stderr=log)
    with open(state_dir / "groundtruth.log", "wb") as log:
        truth_sink = subprocess.Popen(EVTWIN + ["sink", "--kind", "groundtruth"], cwd=REPO, stdout=log, stderr=log,
                                      env=cli_env(state_dir, EVTWIN_METRICS_PORT="0"))
    try:
        producer = kafka.producer(ep.kafka_bootstrap_servers)
        pcodec, tcodec = codec_for(PREDICTIONS, ep), codec_for(GROUND_TRUTH, ep)
        half = len(truths) // 2
        for t in [orphan_t, *truths[:half]]:
            producer.produce(GROUND_TRUTH, tcodec.encode(t), t["battery_id"].encode())
        # Bad truths in the middle of the stream: undecodable bytes, and a NaN true RUL.
        producer.produce(GROUND_TRUTH, b"not an avro record", f"{prefix}0".encode())
        producer.produce(GROUND_TRUTH, tcodec.encode(dict(truths[0], event_id=str(uuid.uuid4()),
                                                          true_rul_cycles=float("nan"))), f"{prefix}0".encode())
        for p in [orphan_p, *preds]:
            producer.produce(PREDICTIONS, pcodec.encode(p), p["battery_id"].encode())
        for t in truths[half:]:
            producer.produce(GROUND_TRUTH, tcodec.encode(t), t["battery_id"].encode())
        assert producer.flush(10) == 0

        expected = _expected(preds, truths)
        fleet_pairs = sum(v[0] for (_, key), v in expected.items() if key == "*")
        assert fleet_pairs == len(preds)

        def rows() -> dict[tuple[int, str], list[float]]:
            with psycopg.connect(ep.database_url) as conn:
                return {(int(t), b): [n, e, i, d, ds] for t, b, n, e, i, d, ds in conn.execute(
                    "SELECT (extract(epoch FROM bucket) * 1000)::int8, battery_id, pairs, rul_abs_error_sum, "
                    "rul_in_band, fault_detections, fault_detection_delay_s_sum FROM ev_accuracy")}

        def done() -> bool:
            try:
                return sum(v[0] for (_, key), v in rows().items() if key == "*") >= fleet_pairs
            except psycopg.Error:  # the table does not exist before the job's migration
                return False

        assert wait_until(done, 90, step=0.5), f"ev_accuracy: {rows() if job.poll() is None else 'job died'}"
        got = rows()
        assert got.keys() == expected.keys()
        for key, want in expected.items():
            assert got[key] == pytest.approx(want), key
        delays = [v[4] for (_, key), v in expected.items() if key == f"{prefix}2" and v[3]]
        assert delays == [20.0]  # onset at reading 10, flagged at reading 14: 4 readings of 5 s

        # The metrics: the window is the 2 buckets up to the newest (120 s of event time).
        newest = max(b for b, _ in expected)
        window = {k: v for k, v in expected.items() if k[0] > newest - WINDOW_S * 1000}

        def figures(key: str) -> tuple[float, float, float]:
            n = sum(v[0] for (_, k), v in window.items() if k == key)
            e = sum(v[1] for (_, k), v in window.items() if k == key)
            i = sum(v[2] for (_, k), v in window.items() if k == key)
            return e / n, i / n, n

        def settled() -> bool:
            m = _metrics(port)
            return m.get(("evtwin_online_pairs_total", ())) == fleet_pairs and \
                m.get(("evtwin_online_unmatched_total", (("topic", GROUND_TRUTH),))) == 1

        assert wait_until(settled, 30, step=0.5), _metrics(port)
        time.sleep(1.5)  # one more report after the last flush
        m = _metrics(port)
        mae, coverage, n = figures("*")
        assert m[("evtwin_online_rul_mae_cycles", ())] == pytest.approx(mae)
        assert m[("evtwin_online_rul_band_coverage", ())] == pytest.approx(coverage)
        assert m[("evtwin_online_window_pairs", ())] == n
        # the failure probability against the truths' label, over the same window
        by_event = {t["event_id"]: t for t in truths}
        scored = [(p["failure_probability"], 1.0 if by_event[p["event_id"]]["failure_within_horizon"] else 0.0)
                  for p in preds if p["timestamp"] - p["timestamp"] % (BUCKET_S * 1000) > newest - WINDOW_S * 1000]
        rate = sum(y for _, y in scored) / len(scored)
        assert 0.0 < rate < 1.0
        assert m[("evtwin_online_failure_brier", ())] == pytest.approx(
            sum((q - y) ** 2 for q, y in scored) / len(scored))
        assert m[("evtwin_online_failure_mean_probability", ())] == pytest.approx(sum(q for q, _ in scored) / len(scored))
        assert m[("evtwin_online_failure_observed_rate", ())] == pytest.approx(rate)
        assert m[("evtwin_online_failure_baseline_brier", ())] == pytest.approx(rate * (1 - rate))
        for b in range(3):
            mae, coverage, n = figures(f"{prefix}{b}")
            labels = (("battery_id", f"{prefix}{b}"),)
            assert m[("evtwin_online_battery_rul_mae_cycles", labels)] == pytest.approx(mae)
            assert m[("evtwin_online_battery_rul_band_coverage", labels)] == pytest.approx(coverage)
            assert m[("evtwin_online_battery_window_pairs", labels)] == n
        assert m[("evtwin_online_battery_fault_detection_delay_seconds", (("battery_id", f"{prefix}2"),))] == 20.0
        assert m[("evtwin_online_fault_detection_delay_seconds_count", ())] == 1
        assert m[("evtwin_online_fault_detection_delay_seconds_sum", ())] == 20.0
        assert m[("evtwin_online_fault_onsets_total", ())] == 1
        assert m[("evtwin_online_unmatched_total", (("topic", PREDICTIONS),))] == 1
        assert m[("evtwin_online_unmatched_total", (("topic", GROUND_TRUTH),))] == 1
        assert m[("evtwin_dead_letters_total", (("error_type", "decode_error"),))] == 1
        assert m[("evtwin_dead_letters_total", (("error_type", "validation_error"),))] == 1

        # The bad truths are on the dead-letter topic, whole, with why, once per sink that met them;
        # both sinks kept going (every good truth is in ev_ground_truth).
        def labelled() -> int:
            with psycopg.connect(ep.database_url) as conn:
                try:
                    return int(conn.execute("SELECT count(*) FROM ev_ground_truth").fetchone()[0])  # type: ignore[index]
                except psycopg.Error:
                    return 0

        assert wait_until(lambda: labelled() == len(truths) + 1, 60, step=0.5), labelled()  # + the orphan
        letters = read_topic(ep.kafka_bootstrap_servers, GROUND_TRUTH_DLQ, lambda msg: True, 4, timeout=30)
        reasons = sorted(dict(msg.headers())[HEADER_REASON].decode() for msg in letters)
        assert [r.split(": ")[:2] for r in reasons] == [
            ["accuracy sink", "not an Avro record"], ["accuracy sink", "true_rul_cycles is nan cycles (not a finite number >= 0)"],
            ["groundtruth sink", "not an Avro record"], ["groundtruth sink", "true_rul_cycles is nan cycles (not a finite number >= 0)"],
        ], reasons
        envelopes = [codec_for(GROUND_TRUTH_DLQ, ep).decode(msg.value()) for msg in letters]
        assert [e["original_value"] for e in envelopes].count(b"not an avro record") == 2
        assert {e["source_topic"] for e in envelopes} == {GROUND_TRUTH}
        assert job.poll() is None and truth_sink.poll() is None
    finally:
        stop_processes([job, truth_sink])
        for proc, path in ((job, log_path), (truth_sink, state_dir / "groundtruth.log")):
            if proc.returncode not in (0, None):
                print(path.read_text(errors="replace")[-4000:], file=sys.stderr)
