"""Retraining on the real database: collected telemetry joined with the simulator's ground truth
(written the way the ground-truth sink writes it), candidate and champion scored on the same
held-out rows, every decision in ``model_promotions`` and MLflow, promotion only when the gate
says so, rollback back to the previous version; ``evtwin retrain`` with --json and its errors."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from connectors.timescale import TimescaleWriter
from models import registry
from tests.support.cli import cli_env, run_cli
from tests.support.database import drop_database, fresh_database
from tests.support.sink_records import ms, prediction
from training import fit
from training.gate import Thresholds
from training.promotion import rollback
from training.retrain import LIVE_PREFIX, RetrainConfig, collect, retrain

WEAK = fit.HyperParams(rul_trees=2, failure_trees=2, anomaly_trees=2, iforest_trees=10,
                       rul_learning_rate=0.05, learning_rate=0.05)
"""A deliberately poor model: the one a good candidate must beat."""
TINY = fit.HyperParams(rul_trees=60, failure_trees=60, anomaly_trees=60, iforest_trees=50)
GATE = Thresholds.parse("rul_mae_cycles", "failure_fleet_brier", 0.02, 0.0)
"""The gate of these tests: on 48 small batteries the anomaly and band metrics of a 2-tree model
are noise, so the tests gate on RUL error and the failure Brier score (as a fleet sees it, the
default's: the probability is calibrated for it)."""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared small simulated fleet (48 packs) as a generated-dataset file."""
    from tests.support.small_model import small_data

    path = tmp_path_factory.mktemp("retrain-data") / "ev_fleet.parquet"
    small_data().frame.to_parquet(path)
    return path


@pytest.fixture
def db_url(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    url = fresh_database(stack[1].database_url, "evtwin_retrain")
    with TimescaleWriter(url) as writer:
        writer.connect()  # migrations: ev_ground_truth, model_promotions
    yield url
    drop_database(url)


def _collected(url: str, batteries: int, readings: int, *, truth_every: int = 1, step_min: float = 10.0,
               start: datetime | None = None) -> int:
    """Predictions of ``batteries`` live packs, ``readings`` each; ground truth for every
    ``truth_every``-th reading. Returns how many readings have their truth."""
    start = start or datetime.now(UTC) - timedelta(hours=2)
    preds, truths = [], []
    rng = np.random.default_rng(1)
    for b in range(batteries):
        bid = f"LIVE_{b:03d}"
        soh = 100.0 - 10.0 * rng.random()
        for k in range(readings):
            t = ms(start + timedelta(minutes=step_min * k))
            p = prediction(bid, t, soh=soh, soc=float(20 + 60 * rng.random()),
                           charge_cycles=int(200 * (100 - soh)))
            preds.append(p)
            if k % truth_every == 0:
                truths.append({"event_id": p["event_id"], "battery_id": bid, "timestamp": t,
                               "true_soh": soh, "true_rul_cycles": 40.0 * (soh - 80.0),
                               "failure_within_horizon": soh < 82.0,
                               "fault": "weak_cell" if b == 0 and k >= 2 else "none",
                               "capacity_ah": 2.0 * soh, "r0_ohm": 0.05})
    with TimescaleWriter(url) as writer:
        writer.write_predictions(preds)
        assert writer.write_ground_truth(truths) == len(truths)
        assert writer.write_ground_truth(truths) == 0  # a replay changes nothing
    return len(truths)


def test_collect_joins_the_scored_telemetry_with_its_ground_truth(db_url: str) -> None:
    labelled = _collected(db_url, batteries=3, readings=6, truth_every=2)
    frame = collect(db_url, max_rows=1000, sample_s=0)
    assert len(frame) == labelled == 9  # readings without their truth are not labelled: left out
    assert set(frame["battery_id"]) == {f"{LIVE_PREFIX}LIVE_{b:03d}" for b in range(3)}
    first = frame[frame["battery_id"] == f"{LIVE_PREFIX}LIVE_000"]
    faulty = first[first["fault"] != "none"]
    assert (faulty["fault_onset"] == faulty["Timestamp"].min()).all()  # the first faulty reading
    assert first.loc[first["fault"] == "none", "fault_onset"].isna().all()
    assert np.allclose(frame["RUL"], 40.0 * (frame["true_soh"] - 80.0))
    newest = collect(db_url, max_rows=4, sample_s=0)
    assert len(newest) == 4 and newest["Timestamp"].min() >= frame["Timestamp"].nlargest(4).min()
    hourly = collect(db_url, max_rows=1000, sample_s=3600)  # one reading per battery and hour
    buckets = frame.assign(h=frame["Timestamp"].astype("int64") // 3_600_000).groupby(["battery_id", "h"])
    assert len(hourly) == buckets.ngroups < len(frame)


def _champion(uri: str, name: str = "ev-twin-retrain") -> list[dict]:  # type: ignore[type-arg]
    from mlflow import MlflowClient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return [{"tags": r.data.tags, "metrics": r.data.metrics} for r in runs]


def test_gate_promotes_only_a_better_candidate_records_every_decision_and_rolls_back(
        db_url: str, dataset: Path, tmp_path: Path) -> None:
    _collected(db_url, batteries=12, readings=8)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    models = tmp_path / "models"
    cfg = RetrainConfig(model_dir=models, database_url=db_url, thresholds=GATE, dataset=dataset,
                        quick=True, seed=3, hp=WEAK, sample_s=0, tracking_uri=uri)

    first = retrain(cfg)
    assert first.promoted and first.champion is None and registry.current_name(models) == "v1"
    assert first.collected_rows == 96 and first.train_rows + first.eval_rows > 96

    better = retrain(dataclasses.replace(cfg, hp=TINY))
    assert better.promoted, better.reason
    assert better.champion == "v1" and better.current == "v2" == registry.current_name(models)
    gain = better.champion_metrics["rul_mae_cycles"] - better.candidate_metrics["rul_mae_cycles"]  # type: ignore[index]
    assert gain > 0

    worse = retrain(dataclasses.replace(cfg, hp=WEAK))
    assert not worse.promoted and worse.reason.startswith("worse on"), worse.reason
    assert [(c.metric, c.ok) for c in worse.gate.checks] == [("rul_mae_cycles", False), ("failure_fleet_brier", False)]
    assert worse.candidate == "v3" and registry.current_name(models) == "v2"  # the champion stays
    assert registry.get_version(models, "v3").status == registry.CANDIDATE
    assert registry.get_version(models, "v3").gate == "rejected" and registry.latest_candidate(models) is None
    # Both models were scored on the same rows: the champion v2 scores what it scored as a candidate.
    assert worse.eval_rows == better.eval_rows
    assert worse.champion_metrics == pytest.approx(better.candidate_metrics, nan_ok=True)

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT decision, candidate_version, champion_version, primary_metric, "
            "candidate_metrics->>'rul_mae_cycles', champion_metrics->>'rul_mae_cycles', eval_rows, "
            "collected_rows, thresholds->>'primary', trigger, mlflow_run_id FROM model_promotions ORDER BY id"
        ).fetchall()
    assert [r[:4] for r in rows] == [("promoted", "v1", None, "rul_mae_cycles"),
                                     ("promoted", "v2", "v1", "rul_mae_cycles"),
                                     ("rejected", "v3", "v2", "rul_mae_cycles")]
    assert float(rows[2][4]) == pytest.approx(worse.candidate_metrics["rul_mae_cycles"])
    assert float(rows[2][5]) == pytest.approx(worse.champion_metrics["rul_mae_cycles"])  # type: ignore[index]
    assert rows[1][5] is not None and rows[0][5] is None
    assert all(r[6] == worse.eval_rows and r[7] == 96 and r[8] == "rul_mae_cycles" and r[9] == "cli" for r in rows)

    runs = _champion(uri)
    assert [(r["tags"]["decision"], r["tags"]["candidate"], r["tags"]["champion"]) for r in runs] == [
        ("promoted", "v1", "none"), ("promoted", "v2", "v1"), ("rejected", "v3", "v2")]
    assert [r[10] for r in rows] == [first.mlflow_run_id, better.mlflow_run_id, worse.mlflow_run_id]
    assert runs[2]["metrics"]["candidate.rul_mae_cycles"] == pytest.approx(worse.candidate_metrics["rul_mae_cycles"])
    assert runs[2]["metrics"]["champion.rul_mae_cycles"] == pytest.approx(better.candidate_metrics["rul_mae_cycles"])

    back = rollback(models)
    assert back.promotion.current.name == "v1" and registry.current_name(models) == "v1"


def test_evtwin_retrain_prints_its_decision_as_json_and_says_what_is_wrong(dataset: Path, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "state", EVTWIN_MODEL_DIR=str(tmp_path / "models"),
                  EVTWIN_RETRAIN_GATED_METRICS="failure_fleet_brier")
    args = ["retrain", "--no-database", "--no-mlflow", "--quick", "--dataset", str(dataset), "--seed", "3", "--json"]
    first = run_cli(args, env, timeout=300)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["decision"] == "promoted" and summary["candidate"]["version"] == "v1"
    assert summary["champion"] is None and summary["current"] == "v1"
    assert summary["rows"]["collected"] == 0 and summary["rows"]["eval"] > 0
    assert summary["thresholds"]["gated"] == ["rul_mae_cycles", "failure_fleet_brier"]
    assert "promoted v1" in first.stderr

    again = run_cli(args, env, timeout=300)  # the same data and seed: the same model, no better
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["decision"] == "rejected" and summary["current"] == "v1"
    assert summary["champion"]["version"] == "v1" and summary["candidate"]["version"] == "v2"
    assert [c["metric"] for c in summary["checks"]] == ["rul_mae_cycles", "failure_fleet_brier"]
    assert summary["checks"][0]["change"] == 0.0 and "rejected v2" in again.stderr
    assert (tmp_path / "models" / "current").read_text() == "v1\n"
    listed = run_cli(["model", "list", "--json"], env)
    assert [(v["version"], v["status"], v["gate"]) for v in json.loads(listed.stdout)] == [
        ("v1", "current", "promoted"), ("v2", "candidate", "rejected")]
    refused = run_cli(["model", "promote"], env)  # the default is never a rejected candidate
    assert refused.returncode == 1 and "no candidate" in refused.stderr

    for extra_env, extra_args, needle in (
            ({}, ["retrain", "--quick"], "no database"),  # no stack running, none configured
            ({"EVTWIN_RETRAIN_GATED_METRICS": "rul_mea_cycles"}, args, "does not know the metric"),
            ({}, ["retrain", "--no-database", "--dataset", str(tmp_path / "absent")], "no dataset at"),
            ({"EVTWIN_RETRAIN_EVERY": "soon"}, ["retrain"], "EVTWIN_RETRAIN_EVERY")):
        bad = run_cli(extra_args, dict(env, **extra_env), timeout=120)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode in (1, 2) and len(lines) == 1 and needle in lines[0], bad.stderr


def _up_commands(state: Path, monkeypatch: pytest.MonkeyPatch, **settings: object) -> list[list[str]]:
    """The commands `evtwin up` would start with these settings (nothing started)."""
    from connectors.embedded.process import ManagedProcess
    from streams.cli import build_parser, stack_cmd
    from streams.settings import Settings

    monkeypatch.setattr(ManagedProcess, "start", lambda self: None)
    procs: list[ManagedProcess] = []
    args = build_parser({}).parse_args(["up"])
    args.resolved_api_port = 8000
    stack_cmd._pipeline(Settings(state_dir=state, **settings), args, procs)  # type: ignore[arg-type]
    return [p.argv[p.argv.index("streams.cli") + 1:] for p in procs]


def test_retraining_runs_on_a_schedule(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import threading

    from tests.support.cli import EVTWIN
    from tests.support.paths import REPO

    assert not any("retrain" in argv for argv in _up_commands(tmp_path, monkeypatch))  # off by default
    planned = _up_commands(tmp_path, monkeypatch, retrain_every="12h")
    assert any(argv[-5:] == ["sink", "--kind", "groundtruth", "--metrics-port", "0"] for argv in planned)
    assert any(argv[-3:] == ["retrain", "--every", "43200.0"] for argv in planned)

    env = cli_env(tmp_path / "state", EVTWIN_MODEL_DIR=str(tmp_path / "models"),
                  EVTWIN_RETRAIN_GATED_METRICS="failure_fleet_brier")
    proc = subprocess.Popen(EVTWIN + ["retrain", "--every", "1", "--no-database", "--no-mlflow", "--quick",
                                      "--dataset", str(dataset), "--seed", "3", "--json"],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while len(lines) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
    decisions = [json.loads(line) for line in lines[:2]]
    assert [(d["decision"], d["candidate"]["version"]) for d in decisions] == [("promoted", "v1"), ("rejected", "v2")]
    assert (tmp_path / "models" / "current").read_text() == "v1\n"
