"""The score workers on the real broker: one prediction per event, in order per battery; bad
records dead-lettered with their reason while the good ones around them are scored; alert
episodes; a replica killed under load loses nothing; a promoted model is picked up live; the
metrics are on the endpoint."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

from connectors import kafka
from schemas.codec import AvroCodec
from streams.runtime.codecs import codec_for
from streams.topics import ALERTS, PREDICTIONS, TELEMETRY, TELEMETRY_DLQ
from tests.support.simulate import simulate
from tests.support.topic_reader import read_topic

PRED = AvroCodec("prediction")  # writes single-object; reading needs the registry (codec_for)


def _predictions(ep, prefix: str, want: int, timeout: float = 90,  # type: ignore[no-untyped-def]
                 covering: set[str] | None = None) -> list[dict]:
    """Predictions of batteries named ``prefix…``: ``want`` of them, or until they cover the
    event ids ``covering``."""
    codec = codec_for(PREDICTIONS, ep)
    seen: set[str] = set()

    def done(found: list) -> bool:
        if covering is None:
            return False
        seen.add(codec.decode(found[-1].value())["event_id"])
        return covering <= seen

    msgs = read_topic(ep.kafka_bootstrap_servers, PREDICTIONS,
                      lambda m: (m.key() or b"").startswith(prefix.encode()), want, timeout, done)
    return [codec.decode(m.value()) for m in msgs]


def test_one_prediction_per_event_in_order_per_battery(stack, workers) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    prefix = f"ORD{uuid.uuid4().hex[:5]}_"
    workers.start(1)
    ids = simulate(ep.kafka_bootstrap_servers, prefix, 50, 3000)
    preds = _predictions(ep, prefix, len(ids))
    assert sorted(p["event_id"] for p in preds) == sorted(ids)  # each exactly once
    by_battery: dict[str, list[int]] = defaultdict(list)
    for p in preds:
        by_battery[p["battery_id"]].append(p["seq"])
        assert p["rul_p10"] <= p["rul_cycles"] <= p["rul_p90"]
        assert 0.0 <= p["failure_probability"] <= 1.0 and p["model_version"].startswith("file:")
        assert p["scored_at"] >= p["timestamp"]
    assert all(seqs == sorted(seqs) for seqs in by_battery.values())


def _reading(battery: str, **changes: object) -> dict:
    record = {"event_id": str(uuid.uuid4()), "battery_id": battery,
              "timestamp": int(time.time() * 1000), "seq": 0, "soc": 60.0, "soh": 95.0,
              "voltage": 370.0, "current": 20.0, "temperature": 28.0, "charge_cycles": 100,
              "power_consumption": 7.4}
    record.update(changes)
    return record


def test_bad_records_are_dead_lettered_and_the_rest_scored(stack, workers) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    tag = uuid.uuid4().hex[:5]
    codec = AvroCodec("telemetry")
    producer = kafka.producer(ep.kafka_bootstrap_servers)
    bad = {
        f"DLQ{tag}_garbage": b"garbage bytes",
        f"DLQ{tag}_zero": b"\x00\x01garbage bytes",  # looks Confluent-framed, names no schema
        f"DLQ{tag}_schema": PRED.encode({**_reading("X"), "rul_cycles": 1.0, "rul_p10": 0.0,
                                         "rul_p90": 2.0, "failure_probability": 0.1,
                                         "anomaly_score": 0.0, "model_version": "m",
                                         "scored_at": 0}),
        f"DLQ{tag}_nan": codec.encode(_reading(f"DLQ{tag}_nan", soc=math.nan)),
        f"DLQ{tag}_soc150": codec.encode(_reading(f"DLQ{tag}_soc150", soc=150.0)),
        f"DLQ{tag}_future": codec.encode(_reading(f"DLQ{tag}_future",
                                                  timestamp=int(time.time() * 1000) + 365 * 86_400_000)),
    }
    good_ids = []
    for i, (key, value) in enumerate(bad.items()):
        for j in range(2):  # valid readings around every bad one
            good = _reading(f"DLQ{tag}_good{i}{j}")
            good_ids.append(good["event_id"])
            producer.produce(TELEMETRY, codec.encode(good), good["battery_id"].encode())
        producer.produce(TELEMETRY, value, key.encode())
    producer.flush(10)
    workers.start(1)
    dead = read_topic(ep.kafka_bootstrap_servers, TELEMETRY_DLQ,
                      lambda m: (m.key() or b"").startswith(f"DLQ{tag}".encode()), len(bad))
    reasons = {m.key().decode(): dict(m.headers())["evtwin.reason"].decode() for m in dead}
    assert set(reasons) == set(bad)
    assert "not an Avro record" in reasons[f"DLQ{tag}_garbage"]
    assert "unknown schema id" in reasons[f"DLQ{tag}_zero"]
    assert "ev.twin.Prediction where ev.twin.Telemetry was expected" in reasons[f"DLQ{tag}_schema"]
    assert "soc is nan" in reasons[f"DLQ{tag}_nan"]
    assert "soc 150.0 % outside 0..100 %" in reasons[f"DLQ{tag}_soc150"]
    assert "in the future" in reasons[f"DLQ{tag}_future"]
    for m in dead:
        headers = dict(m.headers())
        assert headers["evtwin.source.topic"] == TELEMETRY.encode()
        assert int(headers["evtwin.source.offset"]) >= 0
        assert codec_for(TELEMETRY_DLQ, ep).decode(m.value())["original_value"] == bad[m.key().decode()]
    preds = _predictions(ep, f"DLQ{tag}_good", len(good_ids))
    assert sorted(p["event_id"] for p in preds) == sorted(good_ids)


def test_a_battery_hovering_at_a_threshold_opens_one_alert_and_resolves_it_once(stack, workers) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    battery = f"ALERT{uuid.uuid4().hex[:5]}"
    codec = AvroCodec("telemetry")
    producer = kafka.producer(ep.kafka_bootstrap_servers)
    soc = [40, 20, 14, 13.5, 13.8, 13.9] + [14.8, 15.2] * 15 + [18, 19, 20, 21]
    start = int(time.time() * 1000) - len(soc) * 1000
    for i, value in enumerate(soc):
        producer.produce(TELEMETRY, codec.encode(_reading(battery, soc=float(value), seq=i,
                                                          timestamp=start + 1000 * i)), battery.encode())
    producer.flush(10)
    workers.start(1)
    _predictions(ep, battery, len(soc))
    alerts = [codec_for(ALERTS, ep).decode(m.value()) for m in read_topic(
        ep.kafka_bootstrap_servers, ALERTS, lambda m: m.key() == battery.encode(), 10, timeout=5)]
    low_soc = [(a["status"], a["alert_id"]) for a in alerts if a["rule"] == "low_soc"]
    assert [s for s, _ in low_soc] == ["OPENED", "RESOLVED"]
    assert low_soc[0][1] == low_soc[1][1]


def test_a_battery_that_goes_silent_raises_a_telemetry_gap_alert(stack, workers) -> None:  # type: ignore[no-untyped-def]
    """Its partition moves on without it: one telemetry_gap episode, resolved when it is back."""
    _, ep = stack
    workers.start(1, EVTWIN_ALERT_SILENCE_S="2")
    silent, talker = f"GAP{uuid.uuid4().hex[:5]}_S", f"GAP{uuid.uuid4().hex[:5]}_T"
    codec = AvroCodec("telemetry")
    producer = kafka.producer(ep.kafka_bootstrap_servers)

    def send(battery: str, seq: int) -> None:  # both on one partition: the silence is measured on it
        producer.produce(TELEMETRY, codec.encode(_reading(battery, seq=seq)), battery.encode(), partition=0)

    send(talker, 0)
    producer.flush(10)
    _predictions(ep, talker, 1)  # the worker is up and consuming
    for step in range(70):  # 10 Hz: both for 1 s, the talker alone for 5 s, both again for 1 s
        send(talker, step + 1)
        if step < 10 or step >= 60:
            send(silent, step)
        producer.flush(10)
        time.sleep(0.1)
    found = read_topic(ep.kafka_bootstrap_servers, ALERTS, lambda m: m.key() in (silent.encode(), talker.encode()),
                       2, timeout=30)
    alerts = [codec_for(ALERTS, ep).decode(m.value()) for m in found]
    assert [(a["battery_id"], a["rule"], a["status"]) for a in alerts] == [
        (silent, "telemetry_gap", "OPENED"), (silent, "telemetry_gap", "RESOLVED")], workers.logs()
    assert alerts[0]["alert_id"] == alerts[1]["alert_id"]
    assert 4.0 <= alerts[1]["value"] <= 8.0  # the gap, seconds


def test_a_replica_killed_under_load_loses_no_event(stack, workers) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    prefix = f"KILL{uuid.uuid4().hex[:5]}_"
    from connectors.embedded.groups import remove_group_members

    first, _second = workers.start(2)
    time.sleep(6)  # both join the group
    ids: list[str] = []
    feeder = threading.Thread(target=lambda: ids.extend(
        simulate(ep.kafka_bootstrap_servers, prefix, 200, 40_000)))
    feeder.start()
    time.sleep(1.0)  # mid-load: the simulator is still producing, both replicas scoring
    first.send_signal(signal.SIGKILL)
    feeder.join()
    # noida-db never drops a member that died without leaving (a real Kafka does so after the
    # session timeout): what `evtwin up`'s group watch does, clear the group so the survivor rejoins
    # and takes every partition.
    time.sleep(1.0)
    remove_group_members(ep.kafka_bootstrap_servers, workers.app_id)
    preds = _predictions(ep, prefix, len(ids) * 2, timeout=150, covering=set(ids))
    missing = set(ids) - {p["event_id"] for p in preds}
    assert not missing, _diagnose(ep, workers.app_id, missing)  # duplicates allowed (at-least-once)


def _diagnose(ep, group: str, missing: set[str]) -> str:  # type: ignore[no-untyped-def]
    """Where the missing events sit, and how far the group committed: lost or just not yet?"""
    from confluent_kafka import TopicPartition

    codec = codec_for(TELEMETRY, ep)
    where = [(m.partition(), m.offset()) for m in read_topic(
        ep.kafka_bootstrap_servers, TELEMETRY, lambda m: True, 10**9, timeout=10)
        if m.value()[:1] in (b"\x00", b"\xc3") and _event_id(codec, m.value()) in missing]
    consumer = kafka.consumer(ep.kafka_bootstrap_servers, group)
    try:
        parts = sorted({p for p, _ in where})
        committed = {tp.partition: tp.offset for tp in consumer.committed(
            [TopicPartition(TELEMETRY, p) for p in parts], timeout=10)}
        ends = {p: consumer.get_watermark_offsets(TopicPartition(TELEMETRY, p), timeout=10)[1]
                for p in parts}
    finally:
        consumer.close()
    return (f"{len(missing)} events without a prediction at (partition, offset) "
            f"{sorted(where)[:10]}…; committed {committed}; end offsets {ends}")


def _event_id(codec, value: bytes) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return codec.decode(value)["event_id"]  # type: ignore[no-any-return]
    except Exception:
        return None


def test_promoted_model_is_used_without_restart(stack, workers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from training.train import train

    _, ep = stack
    model_dir = tmp_path / "models"
    shutil.copytree(workers.model_dir, model_dir)
    workers.model_dir = model_dir
    workers.start(1, EVTWIN_MODEL_POLL_S="0.5")
    prefix = f"HOT{uuid.uuid4().hex[:5]}_"
    simulate(ep.kafka_bootstrap_servers, prefix + "a", 10, 200)
    before = {p["model_version"] for p in _predictions(ep, prefix + "a", 200)}
    train(None, model_dir, quick=True, seed=1, batteries=30, promote=True)  # a new current model
    time.sleep(3)
    simulate(ep.kafka_bootstrap_servers, prefix + "b", 10, 200)
    after = {p["model_version"] for p in _predictions(ep, prefix + "b", 200)}
    assert len(before) == 1 and len(after) == 1 and before != after


def test_metrics_endpoint_reports_predictions_and_batteries(stack, workers) -> None:  # type: ignore[no-untyped-def]
    from connectors.embedded.process import free_port

    _, ep = stack
    port = free_port()
    workers.start(1, EVTWIN_METRICS_PORT=str(port))
    prefix = f"MET{uuid.uuid4().hex[:5]}_"
    simulate(ep.kafka_bootstrap_servers, prefix, 5, 100)
    _predictions(ep, prefix, 100)
    deadline, text = time.monotonic() + 20, ""
    while time.monotonic() < deadline and f'battery_soc{{battery_id="{prefix}0001"}}' not in text:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            time.sleep(0.5)
    assert f'battery_rul_prediction{{battery_id="{prefix}0001"}}' in text
    total = next(float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith("predictions_total "))
    assert total >= 100
    assert "evtwin_event_latency_seconds_bucket" in text and "evtwin_batch_size_count" in text
    stages = {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("evtwin_stage_seconds_total{")}
    assert set(stages) == {"decode", "validate", "features", "state", "score", "encode", "produce", "alerts",
                           "metrics"} and all(v > 0 for v in stages.values()), stages
    _ = json


def test_a_worker_whose_group_coordination_dies_exits_instead_of_idling(stack, workers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """aiokafka's coordination routine failing (seen with noida-db: a SyncGroup answer it could not
    decode) left a live worker that never joined its group again; it now exits non-zero so that
    its supervisor restarts it. The failure is injected where it happened, in aiokafka's join."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import struct\n"
        "from aiokafka.consumer import group_coordinator as gc\n"
        "async def broken(self, *args, **kwargs):\n"
        "    raise struct.error('unpack requires a buffer of 2 bytes')\n"
        "gc.GroupCoordinator._on_join_complete = broken\n")
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    (proc,) = workers.start(1, PYTHONPATH=path)
    try:
        status = proc.wait(90)
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker kept running with its group coordination dead:\n"
                             + workers.logs()) from None
    log = (stack[0].state_dir / f"{workers.app_id}-0.log").read_text(errors="replace")
    assert status != 0, log[-3000:]
    assert "group coordination stopped" in log, log[-3000:]
