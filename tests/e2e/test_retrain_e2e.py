"""Retraining against the live pipeline (embedded broker, score worker, database and ground-truth
sinks, a fleet simulator feeding all the while): a worse candidate is rejected and the worker keeps
the champion; a better one, trained partly on what the sinks collected, is promoted and predictions
carry its model_version within the poll interval, with no event lost or scored twice, in the
database or on the topic; a rollback brings the previous version back the same way."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from connectors import kafka
from connectors.embedded.process import stop_processes
from connectors.timescale import TimescaleWriter
from models import registry
from models.physics.fleet import Fleet
from schemas.codec import AvroCodec
from streams.runtime.codecs import codec_for
from streams.sources.simulator import FleetSimulator
from streams.topics import PREDICTIONS
from tests.support.cli import EVTWIN, cli_env
from tests.support.database import drop_database, fresh_database
from tests.support.paths import REPO
from tests.support.topic_reader import read_topic
from training import fit
from training.gate import Thresholds
from training.promotion import rollback
from training.retrain import RetrainConfig, retrain

POLL_S = 1.0
"""EVTWIN_MODEL_POLL_S of the workers here."""
SLACK_S = 3.0
"""Beyond the poll interval: a batch already being scored, the model load, a loaded machine."""
WEAK = fit.HyperParams(rul_trees=2, failure_trees=2, anomaly_trees=2, iforest_trees=10,
                       rul_learning_rate=0.05, learning_rate=0.05)
TINY = fit.HyperParams(rul_trees=60, failure_trees=60, anomaly_trees=60, iforest_trees=50)
GATE = Thresholds.parse("rul_mae_cycles", "failure_fleet_brier", 0.02, 0.0)


@pytest.fixture(scope="module")
def base_config(tmp_path_factory: pytest.TempPathFactory) -> RetrainConfig:
    from tests.support.small_model import small_data

    root = tmp_path_factory.mktemp("retrain-e2e")
    small_data().frame.to_parquet(root / "ev_fleet.parquet")
    return RetrainConfig(model_dir=root / "unused", database_url=None, thresholds=GATE,
                         dataset=root / "ev_fleet.parquet", quick=True, seed=3, sample_s=0, window_h=1.0)


def _registry(cfg: RetrainConfig, path: Path, hp: fit.HyperParams) -> str:
    """A registry at ``path`` whose champion (v1) is a model trained with ``hp``; its model_version."""
    first = retrain(dataclasses.replace(cfg, model_dir=path, hp=hp))
    assert first.promoted and registry.current_name(path) == "v1"
    return first.candidate_model_version


class Feeder:
    """A fleet simulator producing telemetry and ground truth in real time, in a thread."""

    def __init__(self, bootstrap: str, prefix: str, batteries: int, rate_hz: float) -> None:
        self.ids: list[str] = []
        codec = AvroCodec("telemetry")
        ids = self.ids

        class Recording:
            def encode(self, record: dict) -> bytes:  # type: ignore[type-arg]
                ids.append(record["event_id"])
                return codec.encode(record)

        self.producer = kafka.producer(bootstrap)
        fleet = Fleet(batteries, seed=11, start_time_s=time.time(), id_prefix=prefix)
        self.sim = FleetSimulator(fleet, self.producer, Recording(), AvroCodec("ground_truth"),  # type: ignore[arg-type]
                                  rate_hz, 24.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: self.sim.run(self.stop), daemon=True)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.producer.flush(10)


@pytest.fixture
def sinks(stack, state_dir: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh database fed by `evtwin sink` (predictions) and `evtwin sink --kind groundtruth`."""
    settings, ep = stack
    url = fresh_database(ep.database_url, "evtwin_retrain_e2e")
    with TimescaleWriter(url) as writer:
        writer.connect()
    procs = []
    for name, args in (("sink", ["sink"]), ("groundtruth", ["sink", "--kind", "groundtruth"])):
        env = cli_env(settings.state_dir, EVTWIN_DATABASE_URL=url, EVTWIN_METRICS_PORT="0",
                      EVTWIN_SINK_APP_ID=f"retrain-e2e-{uuid.uuid4().hex[:6]}")
        log = open(state_dir / f"{name}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(EVTWIN + args, env=env, cwd=REPO, stdout=log, stderr=log))
    yield url
    stop_processes(procs)
    for name in ("sink", "groundtruth"):
        lines = (state_dir / f"{name}.log").read_text(errors="replace").splitlines()
        print(f"--- {name} ---\n" + "\n".join(ln for ln in lines[-30:] if "[INFO]" not in ln), file=sys.stderr)
    drop_database(url)


def _count(url: str, sql: str, *params: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def _wait(what: str, check, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _predictions(ep, prefix: str, timeout: float = 15.0) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """Every prediction of the batteries ``prefix…`` on the topic (read for ``timeout`` seconds)."""
    codec = codec_for(PREDICTIONS, ep)
    msgs = read_topic(ep.kafka_bootstrap_servers, PREDICTIONS,
                      lambda m: (m.key() or b"").startswith(prefix.encode()), 10**9, timeout)
    return [codec.decode(m.value()) for m in msgs]


def test_a_worse_candidate_is_rejected_and_the_worker_keeps_the_champion(  # type: ignore[no-untyped-def]
        stack, workers, base_config: RetrainConfig, tmp_path: Path) -> None:
    _, ep = stack
    models = tmp_path / "models"
    champion = _registry(base_config, models, TINY)
    workers.model_dir = models
    workers.start(1, EVTWIN_MODEL_POLL_S=str(POLL_S))
    prefix = f"RTW{uuid.uuid4().hex[:5]}_"
    with Feeder(ep.kafka_bootstrap_servers, prefix, 10, 5.0) as feed:
        time.sleep(3)
        worse = retrain(dataclasses.replace(base_config, model_dir=models, hp=WEAK))
        decided = time.time() * 1000
        time.sleep(POLL_S + SLACK_S + 3)
    assert not worse.promoted and worse.candidate == "v2", worse.reason
    assert registry.current_name(models) == "v1"
    preds = _predictions(ep, prefix)
    assert {p["event_id"] for p in preds} == set(feed.ids)
    after = [p for p in preds if p["scored_at"] > decided + (POLL_S + SLACK_S) * 1000]
    assert after and {p["model_version"] for p in preds} == {champion}


def test_a_better_candidate_goes_live_within_the_poll_interval_and_a_rollback_comes_back(  # type: ignore[no-untyped-def]
        stack, workers, sinks: str, base_config: RetrainConfig, tmp_path: Path) -> None:
    _, ep = stack
    models = tmp_path / "models"
    old = _registry(base_config, models, WEAK)
    workers.model_dir = models
    workers.start(1, EVTWIN_MODEL_POLL_S=str(POLL_S))
    prefix = f"RTB{uuid.uuid4().hex[:5]}_"
    like = prefix + "%"
    with Feeder(ep.kafka_bootstrap_servers, prefix, 20, 5.0) as feed:
        _wait("collected, labelled readings", lambda: _count(
            sinks, "SELECT count(*) FROM ev_telemetry t JOIN ev_ground_truth g USING (time, battery_id) "
            "WHERE t.battery_id LIKE %s", like) >= 400)
        better = retrain(dataclasses.replace(base_config, model_dir=models, hp=TINY, database_url=sinks))
        promoted = time.time() * 1000
        assert better.promoted, better.reason
        assert better.collected_rows >= 400 and registry.current_name(models) == "v2"
        time.sleep(POLL_S + SLACK_S + 4)
        back = rollback(models)
        rolled = time.time() * 1000
        assert back.promotion.current.name == "v1"
        time.sleep(POLL_S + SLACK_S + 4)
    new = better.candidate_model_version
    assert new != old
    ids = set(feed.ids)
    assert len(ids) == len(feed.ids)
    _wait("every reading in the database", lambda: _count(
        sinks, "SELECT count(*) FROM ev_telemetry WHERE battery_id LIKE %s", like) >= len(ids))

    with psycopg.connect(sinks) as conn:
        rows = conn.execute("SELECT event_id, model_version FROM ev_telemetry WHERE battery_id LIKE %s",
                            (like,)).fetchall()
    assert len(rows) == len(ids) and {r[0] for r in rows} == ids  # none lost, none twice
    preds = _predictions(ep, prefix)
    assert sorted(p["event_id"] for p in preds) == sorted(ids)  # each scored exactly once
    assert {r[1] for r in rows} == {old, new}

    def versions(start: float, end: float) -> set[str]:
        return {p["model_version"] for p in preds if start < p["scored_at"] <= end}

    settle = (POLL_S + SLACK_S) * 1000
    assert versions(0, promoted) == {old}
    assert versions(promoted + settle, rolled) == {new}
    assert versions(rolled + settle, float("inf")) == {old}
    first_new = min(p["scored_at"] for p in preds if p["model_version"] == new)
    print(f"the promoted model scored its first event {(first_new - promoted) / 1000:.2f} s after the "
          f"promotion (poll interval {POLL_S:g} s)", file=sys.stderr)
    # Per battery, in event order, the version switches once each way: never back and forth.
    by_battery: dict[str, list[str]] = defaultdict(list)
    for p in sorted(preds, key=lambda p: (p["battery_id"], p["timestamp"], p["seq"])):
        by_battery[p["battery_id"]].append(p["model_version"])
    for seq in by_battery.values():
        changes = sum(a != b for a, b in zip(seq, seq[1:], strict=False))
        assert changes <= 2, seq
