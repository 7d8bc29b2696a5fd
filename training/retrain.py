"""Retraining with a gated promotion (``evtwin retrain``).

One run:

1. **Collect**: the readings the twin scored (``ev_telemetry``) joined with the simulator's ground
   truth (``ev_ground_truth``, written by ``evtwin sink --kind groundtruth``) on ``(time,
   battery_id)``, thinned to one reading per battery and ``sample_s`` (an hour by default), newest
   first, at most ``max_rows``. The database holds only the inputs that ``ev.predictions.v1``
   carries: ambient temperature, cell voltages, service days and mode are missing (NaN, mode
   UNKNOWN) in these rows.
2. **Combine** them with the generated run-to-failure dataset (a file, or a fleet simulated in
   memory with a fixed seed).
3. **Hold out** a fraction of batteries, chosen by a hash of the battery id, so the same ones are
   held out in every run: no candidate a retraining trained has seen them. The gate rows are the
   held-out generated batteries and, of the held-out collected batteries, the readings of the recent
   window (``window_h``).
4. **Train** a candidate on the rest (``training.train.train``: a new candidate version in the
   registry, logged to MLflow when asked).
5. **Gate** (``training.gate``): score candidate and champion (the current version) with the
   serving path on the same gate rows; promote only when the candidate is not worse on any gated
   metric and better on the primary one.
6. **Record** the decision, with both sets of metrics, in ``model_promotions`` and in MLflow
   (experiment ``ev-twin-retrain``); then promote (``training.promotion.promote``: the ``current``
   pointer the workers follow, and the MLflow alias ``champion``).

A champion that no longer loads with this code (trained on other features) cannot be compared; the
workers cannot load it either, so the candidate is promoted and the reason says so.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import registry
from training import data, fit
from training.errors import TrainingDataError, TrainingError
from training.gate import GateResult, Thresholds, compare, measure

LIVE_PREFIX = "live:"
"""Prefix of collected battery ids in the training frame (a live BATTERY_0001 is not the generated
dataset's BATTERY_0001)."""
_COLLECT_SQL = """
SELECT time, battery_id, soc, soh, voltage, current, temperature, charge_cycles, power_consumption,
       true_soh, true_rul_cycles, failure_within_horizon, fault
FROM (
    SELECT DISTINCT ON (t.battery_id, {bucket}) t.time, t.battery_id, t.soc, t.soh, t.voltage,
           t.current, t.temperature, t.charge_cycles, t.power_consumption, g.true_soh,
           g.true_rul_cycles, g.failure_within_horizon, g.fault
    FROM ev_telemetry t JOIN ev_ground_truth g USING (time, battery_id)
    ORDER BY t.battery_id, {bucket}, t.time DESC
) thinned
ORDER BY time DESC
LIMIT %(limit)s
"""
_RECORD_SQL = """
INSERT INTO model_promotions (decision, reason, candidate_version, candidate_model_version,
    champion_version, champion_model_version, primary_metric, candidate_metrics, champion_metrics,
    thresholds, eval_rows, eval_batteries, train_rows, collected_rows, mlflow_run_id, trigger)
VALUES (%(decision)s, %(reason)s, %(candidate_version)s, %(candidate_model_version)s,
    %(champion_version)s, %(champion_model_version)s, %(primary_metric)s, %(candidate_metrics)s,
    %(champion_metrics)s, %(thresholds)s, %(eval_rows)s, %(eval_batteries)s, %(train_rows)s,
    %(collected_rows)s, %(mlflow_run_id)s, %(trigger)s)
RETURNING id
"""


@dataclass(frozen=True)
class RetrainConfig:
    """What one retraining run uses (the CLI fills it from ``EVTWIN_RETRAIN_*``).

    Attributes:
        model_dir: The model registry (``EVTWIN_MODEL_DIR``).
        database_url: Where the collected telemetry and ground truth are; None = the generated
            dataset only (nothing recorded in ``model_promotions``).
        thresholds: The gate.
        dataset: Generated dataset file or directory; None = simulate ``batteries`` packs.
        batteries: Packs simulated when ``dataset`` is None.
        seed: Seed of the simulation and the models (fixed: the same fleet every run).
        quick: Coarser simulation and fewer trees (see ``training.train``).
        hp: Hyper-parameters of the candidate (default: those of ``quick`` or the full run).
        window_h: Recent window of collected readings the gate scores on, hours.
        holdout: Fraction of batteries held out for the gate.
        max_rows: Collected readings used at most; 0 = none.
        sample_s: Collected readings are thinned to one per battery and ``sample_s`` seconds
            (0 = all).
        tracking_uri: MLflow tracking URI (decisions are logged there; None = not logged).
        log_models: Also log and register the candidate's models in MLflow (as ``evtwin train``).
        trigger: Who ran it (``cli``, ``schedule``), recorded with the decision.
    """

    model_dir: Path
    database_url: str | None
    thresholds: Thresholds = field(default_factory=Thresholds)
    dataset: Path | None = None
    batteries: int = 500
    seed: int = 0
    quick: bool = False
    hp: fit.HyperParams | None = None
    window_h: float = 168.0
    holdout: float = 0.2
    max_rows: int = 200_000
    sample_s: float = 3600.0
    tracking_uri: str | None = None
    log_models: bool = False
    trigger: str = "cli"


@dataclass
class TrainingSet:
    """The rows of one run: training data, gate rows, and where they came from."""

    train: data.TrainingData
    gate: data.TrainingData
    collected_rows: int
    collected_batteries: int
    generated_rows: int
    gate_collected_rows: int
    window_start: datetime


@dataclass
class RetrainResult:
    """Outcome of :func:`retrain` (``as_dict`` is the ``--json`` summary)."""

    decision: str
    reason: str
    candidate: str
    candidate_model_version: str
    champion: str | None
    champion_model_version: str | None
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    gate: GateResult
    thresholds: Thresholds
    eval_rows: int
    eval_batteries: int
    train_rows: int
    collected_rows: int
    generated_rows: int
    current: str | None
    promotion_id: int | None = None
    mlflow_run_id: str | None = None
    mlflow_note: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def as_dict(self) -> dict[str, Any]:
        def clean(metrics: dict[str, float] | None) -> dict[str, float | None] | None:
            if metrics is None:
                return None
            return {k: (v if math.isfinite(v) else None) for k, v in sorted(metrics.items())}

        return {
            "decision": self.decision, "reason": self.reason,
            "candidate": {"version": self.candidate, "model_version": self.candidate_model_version,
                          "metrics": clean(self.candidate_metrics)},
            "champion": None if self.champion is None else {
                "version": self.champion, "model_version": self.champion_model_version,
                "metrics": clean(self.champion_metrics)},
            "current": self.current,
            "checks": [{"metric": c.metric, "candidate": _finite(c.candidate), "champion": _finite(c.champion),
                        "change": _finite(c.change), "ok": c.ok, "note": c.note} for c in self.gate.checks],
            "thresholds": self.thresholds.as_dict(),
            "rows": {"train": self.train_rows, "eval": self.eval_rows, "eval_batteries": self.eval_batteries,
                     "collected": self.collected_rows, "generated": self.generated_rows},
            "promotion_id": self.promotion_id, "mlflow_run_id": self.mlflow_run_id,
            "mlflow": self.mlflow_note, "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- Data ----------------------------------------------------------------------------------------


def held_out(battery_ids: np.ndarray, fraction: float) -> np.ndarray:
    """Whether each battery is held out: a hash of its id below ``fraction`` (the same every run)."""
    def unit(text: str) -> float:
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0**64

    ids, inverse = np.unique(np.asarray(battery_ids, dtype=str), return_inverse=True)
    flags = np.array([unit(i) < fraction for i in ids], dtype=bool)
    return flags[inverse]


def collect(database_url: str, max_rows: int, sample_s: float = 3600.0) -> pd.DataFrame:
    """Collected readings with their ground truth, as a dataset frame (the generated dataset's
    column names; battery ids prefixed with :data:`LIVE_PREFIX`).

    Raises:
        TrainingError: If the database is unreachable or lacks the tables.
    """
    import psycopg
    from psycopg import sql

    if max_rows <= 0:
        return _frame_of([])
    bucket = ("t.time" if sample_s <= 0 else
              f"floor(extract(epoch FROM t.time) / {float(sample_s)!r})")
    query = sql.SQL(_COLLECT_SQL.format(bucket=bucket))  # bucket: our own float, no user text
    try:
        with psycopg.connect(database_url, connect_timeout=10) as conn:
            rows = conn.execute(query, {"limit": int(max_rows)}).fetchall()
    except psycopg.errors.UndefinedTable as exc:
        raise TrainingError(f"the database lacks the retraining tables ({str(exc).splitlines()[0]}); "
                            "start the sinks once (`evtwin sink --kind groundtruth` migrates it)") from exc
    except psycopg.Error as exc:
        raise TrainingError(f"reading the collected telemetry failed: {str(exc).strip().splitlines()[0]}") from exc
    return _frame_of(rows)


def _frame_of(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    cols = ["Timestamp", "battery_id", "SoC", "SoH", "Battery_Voltage", "Battery_Current",
            "Battery_Temperature", "Charge_Cycles", "Power_Consumption", "true_soh", "RUL",
            "failure_within_horizon", "fault"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["Timestamp"] = pd.to_datetime(frame["Timestamp"], utc=True).dt.as_unit("ms")
    frame["battery_id"] = LIVE_PREFIX + frame["battery_id"].astype(str)
    for col in cols[2:11]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(np.float64)
    frame["failure_within_horizon"] = frame["failure_within_horizon"].fillna(False).astype(bool)
    frame["fault"] = frame["fault"].fillna("none").astype(str)
    frame = frame.sort_values(["battery_id", "Timestamp"], kind="stable").reset_index(drop=True)
    faulty = frame["fault"] != "none"  # onset = the first collected reading with the fault
    first = frame["Timestamp"].where(faulty).groupby([frame["battery_id"], frame["fault"]]).transform("min")
    frame["fault_onset"] = first.where(faulty)
    return frame


def _generated(cfg: RetrainConfig) -> tuple[pd.DataFrame, str]:
    """The generated dataset's frame and a description of it."""
    if cfg.dataset is not None:
        frame, kind = data.read_frame(Path(cfg.dataset))
        if kind != "ev_fleet":
            raise TrainingDataError(f"{cfg.dataset}: retraining needs the generated fleet dataset "
                                    "(battery ids, ground-truth faults), not the Kaggle file")
        return frame, str(cfg.dataset)
    from datasets.generate import build_frame

    frame = build_frame(cfg.batteries, cfg.seed, progress=False, cfg=data.QUICK_CONFIG if cfg.quick else None)
    return frame, f"generated:n={cfg.batteries},seed={cfg.seed},{'quick' if cfg.quick else 'full'}"


def build_training_set(cfg: RetrainConfig, collected: pd.DataFrame | None = None,
                       now: datetime | None = None) -> TrainingSet:
    """The training data and the gate rows of one run (see the module docstring).

    Args:
        cfg: The run's configuration.
        collected: Collected rows (a :func:`collect` frame); None = read them from the database.
        now: End of the recent window (default: now).

    Raises:
        TrainingDataError: If the rows are too few to train and gate.
    """
    if collected is None:
        collected = collect(cfg.database_url, cfg.max_rows, cfg.sample_s) if cfg.database_url else _frame_of([])
    generated, source = _generated(cfg)
    frame = pd.concat([generated, collected], ignore_index=True) if len(collected) else generated
    frame = frame.sort_values(["battery_id", "Timestamp"], kind="stable").reset_index(drop=True)
    ids = frame["battery_id"].astype(str).to_numpy()
    out = held_out(ids, cfg.holdout)
    live = np.char.startswith(ids.astype(str), LIVE_PREFIX)
    window_start = (now or datetime.now(UTC)) - timedelta(hours=cfg.window_h)
    recent = (frame["Timestamp"] >= pd.Timestamp(window_start)).to_numpy()
    gate_rows = out & (~live | recent)
    if not gate_rows.any() or out.all():
        raise TrainingDataError(f"{len(np.unique(ids))} batteries are too few to hold "
                                f"{cfg.holdout:.0%} out for the gate and train on the rest")
    tag = f"{source}+collected:{len(collected)}"
    train_td = data.from_frame(frame[~out].reset_index(drop=True), "ev_fleet", f"retrain:{tag}")
    gate_td = data.from_frame(frame[gate_rows].reset_index(drop=True), "ev_fleet", f"gate:{tag}")
    return TrainingSet(train_td, gate_td, len(collected),
                       int(collected["battery_id"].nunique()) if len(collected) else 0,
                       len(generated), int((gate_rows & live).sum()), window_start)


# --- The run -------------------------------------------------------------------------------------


def _champion(model_dir: Path) -> tuple[Any, str | None, str | None]:
    """``(scorer or None, version name, why it cannot be compared or None)``."""
    from models.errors import ModelError, ModelNotFoundError
    from models.scorer import Scorer

    try:
        name = registry.current_name(model_dir)
        scorer = Scorer.load(model_dir)
    except ModelNotFoundError:
        return None, None, None
    except ModelError as exc:
        return None, registry.current_name(model_dir), str(exc)
    return scorer, scorer.registry_version or name, None


def _record(database_url: str, row: dict[str, Any]) -> int:
    import psycopg
    from psycopg.types.json import Jsonb

    params = dict(row)
    for key in ("candidate_metrics", "champion_metrics", "thresholds"):
        params[key] = None if params[key] is None else Jsonb(params[key])
    try:
        with psycopg.connect(database_url, connect_timeout=10) as conn:
            found = conn.execute(_RECORD_SQL, params).fetchone()
    except psycopg.Error as exc:
        raise TrainingError(f"recording the decision in model_promotions failed: "
                            f"{str(exc).strip().splitlines()[0]}; nothing was promoted") from exc
    assert found is not None
    return int(found[0])


def _json_metrics(metrics: dict[str, float] | None) -> dict[str, float | None] | None:
    return None if metrics is None else {k: _finite(v) for k, v in metrics.items()}


def retrain(cfg: RetrainConfig, *, collected: pd.DataFrame | None = None,
            on_step: Callable[[str], None] | None = None) -> RetrainResult:
    """Collect, train a candidate, gate it against the champion, record and (maybe) promote.

    Args:
        cfg: The run's configuration.
        collected: Collected rows to use instead of reading the database (tests).
        on_step: Called with ``collect``, ``train``, ``gate``, ``record``, ``promote`` as each starts.

    Raises:
        TrainingDataError: If the data is too small.
        TrainingError: If the database cannot be read or the decision cannot be recorded (then
            nothing is promoted).
    """
    from models.scorer import Scorer
    from training.promotion import promote
    from training.train import train

    step = on_step or (lambda _name: None)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    step("collect")
    ts = build_training_set(cfg, collected)
    clock["data"] = time.perf_counter() - t0
    step("train")
    t1 = time.perf_counter()
    trained = train(ts.train, cfg.model_dir, cfg.quick, seed=cfg.seed, hp=cfg.hp,
                    tracking_uri=cfg.tracking_uri, log_mlflow=cfg.log_models and cfg.tracking_uri is not None)
    clock["train"] = time.perf_counter() - t1
    step("gate")
    t2 = time.perf_counter()
    gate = ts.gate
    mean = float(trained.card.get("rul_train_mean", np.nanmean(ts.train.rul)))
    candidate = Scorer.load(trained.model_dir)
    cand_metrics = measure(candidate, gate.X, gate.rul, gate.failure, gate.frame, mean)
    champion, champ_name, unusable = _champion(Path(cfg.model_dir))
    champ_metrics = None
    if unusable is not None:
        result = GateResult(True, f"the current version {champ_name} does not load with this code "
                            f"({unusable}); the candidate replaces it")
    else:
        if champion is not None:
            champ_metrics = measure(champion, gate.X, gate.rul, gate.failure, gate.frame, mean)
        result = compare(cand_metrics, champ_metrics, cfg.thresholds)
    clock["gate"] = time.perf_counter() - t2
    out = RetrainResult(
        decision=result.decision, reason=result.reason, candidate=trained.registry_version,
        candidate_model_version=trained.version, champion=champ_name,
        champion_model_version=None if champion is None else champion.version,
        candidate_metrics=cand_metrics, champion_metrics=champ_metrics, gate=result,
        thresholds=cfg.thresholds, eval_rows=len(gate.X), eval_batteries=int(len(np.unique(gate.groups))),
        train_rows=len(ts.train.X), collected_rows=ts.collected_rows, generated_rows=ts.generated_rows,
        current=champ_name, seconds=clock)
    step("record")
    if cfg.tracking_uri is not None:
        out.mlflow_run_id, out.mlflow_note = _log_decision(cfg.tracking_uri, out)
    if cfg.database_url is not None:
        out.promotion_id = _record(cfg.database_url, {
            "decision": out.decision, "reason": out.reason, "candidate_version": out.candidate,
            "candidate_model_version": out.candidate_model_version, "champion_version": out.champion,
            "champion_model_version": out.champion_model_version,
            "primary_metric": cfg.thresholds.primary, "candidate_metrics": _json_metrics(cand_metrics),
            "champion_metrics": _json_metrics(champ_metrics), "thresholds": cfg.thresholds.as_dict(),
            "eval_rows": out.eval_rows, "eval_batteries": out.eval_batteries,
            "train_rows": out.train_rows, "collected_rows": out.collected_rows,
            "mlflow_run_id": out.mlflow_run_id, "trigger": cfg.trigger})
    registry.record_gate(Path(cfg.model_dir), trained.registry_version, result.decision, result.reason)
    if result.promote:
        step("promote")
        done = promote(Path(cfg.model_dir), trained.registry_version, tracking_uri=cfg.tracking_uri)
        out.current = done.promotion.current.name
        if done.mlflow:
            out.mlflow_note = "; ".join(n for n in (out.mlflow_note, done.mlflow) if n)
    clock["total"] = time.perf_counter() - t0
    return out


def _log_decision(tracking_uri: str, out: RetrainResult) -> tuple[str | None, str | None]:
    """Log the decision to MLflow: ``(run id, None)``, or ``(None, what went wrong)`` (not fatal:
    the database row and the registry are the record the system acts on)."""
    from training import tracking

    try:
        run_id = tracking.log_decision(tracking_uri, out.as_dict())
    except TrainingError as exc:
        return None, f"MLflow: decision not logged: {exc}"
    return run_id, None


__all__ = ["LIVE_PREFIX", "RetrainConfig", "RetrainResult", "TrainingSet", "build_training_set", "collect",
           "held_out", "retrain"]
