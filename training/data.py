"""Training data: the generated fleet (or the Kaggle file), its labels, and a leak-free battery split.

Labels come from the dataset's ground-truth columns (never model inputs): ``RUL`` (EFC),
``failure_within_horizon`` and the active ``fault`` (anomaly = a fault is active at the reading).
The Kaggle EVIoT-PredictiveMaint file has other labels (``kaggle_RUL``, ``kaggle_Failure_Probability``)
and no fault onsets: it trains RUL and failure on those, reports no anomaly metric, and, being one
vehicle, is split by time (first 70 % train, next 10 % calibration, last 20 % test), not by battery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from datasets.errors import DatasetError
from models.features import features_from_frame
from models.physics.history import HistoryConfig
from training.errors import TrainingDataError

QUICK_CONFIG = HistoryConfig(day_dt_s=600.0, loss_per_iteration=0.002)
"""Coarser multi-rate settings for quick training and tests (~4x faster, same physics)."""
SILENT_FAULTS: tuple[str, ...] = ("sensor_dropout",)
"""Faults invisible in a single reading (the dropout removes readings; the stream's
``telemetry_gap`` alert reveals it, see ``streams/alerts.py``)."""
QUICK_BATTERIES = 80
"""Batteries simulated by a quick training run."""


@dataclass
class TrainingData:
    """Features, labels and groups of one dataset.

    Attributes:
        X: float32 features (n, len(FEATURE_NAMES)).
        rul: Remaining useful life (EFC, or Kaggle's own unit for the Kaggle file).
        failure: Failure within the horizon (bool).
        anomaly: A fault is active at the reading (bool); None without fault labels.
        silent: The active fault leaves no trace in the reading itself (``SILENT_FAULTS``: a link
            dropout removes rows, it does not alter them); excluded when fitting detectors.
        groups: Battery id of every row.
        frame: The source frame (for onset times and per-fault metrics).
        kind: ``ev_fleet`` or ``kaggle``.
        source: Where it came from (path or ``generated:n=..,seed=..``).
        sha256: Hash of the data file (or of the generated frame).
    """

    X: np.ndarray
    rul: np.ndarray
    failure: np.ndarray
    anomaly: np.ndarray | None
    silent: np.ndarray
    groups: np.ndarray
    frame: pd.DataFrame
    kind: str
    source: str
    sha256: str
    info: dict[str, object] = field(default_factory=dict)


def _frame_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's values (stable for the same data)."""
    digest = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashlib.sha256(digest).hexdigest()


def _is_kaggle(path: Path) -> bool:
    from datasets.loader import KAGGLE_FILENAME

    return path.name == KAGGLE_FILENAME or (path.is_dir() and (path / KAGGLE_FILENAME).exists())


def read_frame(path: Path) -> tuple[pd.DataFrame, str]:
    """Read the generated dataset or the Kaggle CSV at ``path``; returns (frame, kind).

    Raises:
        TrainingDataError: If nothing usable is there.
    """
    from datasets.loader import load_dataset, load_kaggle

    path = Path(path)
    try:
        if _is_kaggle(path):
            return load_kaggle(path), "kaggle"
        frame = load_dataset(path)
        if "RUL" not in frame.columns and "kaggle_RUL" not in frame.columns:
            return load_kaggle(path), "kaggle"
        return frame, "ev_fleet"
    except DatasetError as exc:
        raise TrainingDataError(str(exc)) from exc


def from_frame(frame: pd.DataFrame, kind: str, source: str, sha256: str | None = None) -> TrainingData:
    """Features and labels of a frame (generated dataset or Kaggle file).

    Raises:
        TrainingDataError: If label columns are missing.
    """
    try:
        X = features_from_frame(frame)
    except KeyError as exc:
        raise TrainingDataError(f"{source}: missing column {exc}") from exc
    if kind == "kaggle":
        rul, fail, anomaly = _kaggle_labels(frame, source)
    else:
        missing = [c for c in ("RUL", "failure_within_horizon", "fault", "battery_id") if c not in frame]
        if missing:
            raise TrainingDataError(f"{source}: missing label columns {missing}")
        rul = frame["RUL"].to_numpy(dtype=np.float64)
        fail = frame["failure_within_horizon"].to_numpy(dtype=bool)
        anomaly = frame["fault"].to_numpy(dtype=object) != "none"
    silent = frame["fault"].isin(SILENT_FAULTS).to_numpy() if "fault" in frame else np.zeros(len(X), bool)
    groups = frame["battery_id"].astype(str).to_numpy()
    return TrainingData(X, rul, fail, anomaly, silent, groups, frame, kind, source,
                        sha256 or _frame_hash(frame))


def _kaggle_labels(frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray, None]:
    """RUL and failure labels of the Kaggle file (its own meanings); no anomaly labels."""
    for col in ("kaggle_RUL", "kaggle_Failure_Probability"):
        if col not in frame:
            raise TrainingDataError(f"{source}: the Kaggle file lacks {col.removeprefix('kaggle_')}")
    rul = pd.to_numeric(frame["kaggle_RUL"], errors="coerce").to_numpy(dtype=np.float64)
    prob = pd.to_numeric(frame["kaggle_Failure_Probability"], errors="coerce").to_numpy(dtype=np.float64)
    return rul, np.nan_to_num(prob) >= 0.5, None


def generate(n_batteries: int, seed: int, quick: bool, progress: bool = False) -> TrainingData:
    """Simulate a fleet in memory (``datasets.generate.build_frame``) and return its training data."""
    from datasets.generate import build_frame

    frame = build_frame(n_batteries, seed, progress=progress, cfg=QUICK_CONFIG if quick else None)
    tag = "quick" if quick else "full"
    return from_frame(frame, "ev_fleet", f"generated:n={n_batteries},seed={seed},{tag}")


def load(path: Path) -> TrainingData:
    """Training data of the dataset at ``path`` (file or directory)."""
    from models.registry import sha256_file

    frame, kind = read_frame(path)
    files = [p for p in ([path] if Path(path).is_file() else Path(path).glob("ev_fleet.*")) if p.is_file()]
    digest = sha256_file(files[0]) if files else None
    return from_frame(frame, kind, str(path), digest)


@dataclass(frozen=True)
class Split:
    """Row indices of the three disjoint parts (no battery in two parts when ``by`` is battery)."""

    train: np.ndarray
    calib: np.ndarray
    test: np.ndarray
    by: str


def days_after_onset(frame: pd.DataFrame) -> np.ndarray:
    """Days from the fault's onset to each reading: NaN where the reading carries no onset (the
    generated dataset sets ``fault_onset`` on the rows with the fault active only)."""
    onset = pd.to_datetime(frame["fault_onset"], utc=True)
    t = pd.to_datetime(frame["Timestamp"], utc=True)
    return ((t - onset).dt.total_seconds() / 86400.0).to_numpy(dtype=np.float64)


def fleet_weights(frame: pd.DataFrame) -> np.ndarray:
    """How much of a fleet's reporting each row of a generated dataset stands for (mean 1).

    A fleet in service reports at a steady rate and replaces a pack some time after a fault
    (``models.physics.params.FaultParams.repair_after_days``, as the live simulator does). The
    generated histories do neither: their sampled days lie closer where a pack ages fast (early
    life; 1-30 days apart), and a pack with a fault runs on to its end of life — 83 % of the failure
    label's positives of a 200-pack fleet (seed 101) are rows past the repair
    (``evtwin evaluate --ceiling``: ``failure_positives_past_repair_fraction``), and the label's
    share of rows is 7.1 % where a fleet's readings see ~1 % (1.0 % weighted; 0.84 % in a replay
    of the live fleet). Weighted, the rows stand for the fleet a twin watches: a row's weight is
    the service days until its pack's next sampled day over the rows of its day (its last day: the
    gap before it; cut at the repair, ``repair_after_days`` after its pack's fault began, and 0
    past it). Rows without a service day (a live fleet's readings collected for retraining) weigh
    as the median generated row.

    Args:
        frame: Rows of a generated dataset (``battery_id``, ``Service_Days``; ``Timestamp`` and
            ``fault_onset`` for the repair), each battery's rows in time order; without a
            ``Service_Days`` column every row weighs 1.
    """
    from models.physics.params import FaultParams

    n = len(frame)
    if n == 0 or "Service_Days" not in frame or "battery_id" not in frame:
        return np.ones(n)  # no battery time to weigh by (a dataset of an older generator)
    days = pd.DataFrame({"b": frame["battery_id"].astype(str).to_numpy(),
                         "day": np.floor(frame["Service_Days"].to_numpy(dtype=np.float64))})
    per_day = days.groupby(["b", "day"], sort=False).size().rename("n").reset_index()
    span = per_day.groupby("b", sort=False)["day"].shift(-1) - per_day["day"]
    span = span.fillna(span.groupby(per_day["b"], sort=False).shift(1)).fillna(1.0)
    per_day["span"] = np.maximum(span.to_numpy(), 1.0)
    merged = days.merge(per_day[["b", "day", "span", "n"]], on=["b", "day"], how="left")
    span_row, n_row = merged["span"].to_numpy(dtype=np.float64), merged["n"].to_numpy(dtype=np.float64)
    if "fault_onset" in frame and "Timestamp" in frame:  # the pack is replaced within its span
        left = FaultParams().repair_after_days - days_after_onset(frame)  # NaN without a fault
        span_row = np.where(np.isnan(left), span_row, np.clip(np.fmin(span_row, left), 0.0, None))
    w = span_row / n_row
    dated = ~np.isnan(w)
    # Rows without a service day (readings a live fleet reported, collected for retraining) already
    # are a steady sample of a fleet that replaces its faulty packs: the generated rows' median.
    w[~dated] = float(np.median(w[dated & (w > 0)])) if (dated & (w > 0)).any() else 1.0
    total = w.sum()
    return w * (n / total) if total > 0 else np.ones(n)


ATTACH_SPAN: tuple[float, float] = (0.2, 0.8)
"""Where in a battery's rows :func:`attach_replays` starts its twin (fractions of the rows)."""


def attach_replays(td: TrainingData, rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of batteries as a twin attached to them mid-life sees them.

    A live twin meets most packs mid-life (a fleet that is already on the road, a worker whose
    state starts with the stream), where the dataset's replay knows every pack from new: without
    the pack's early life the fade law's split between BMS bias and true fade stays open (a
    larger ``fade_sd``, which in the from-new replay only a young pack shows). Each battery of
    ``rows`` is replayed again from a new state at a random point within :data:`ATTACH_SPAN` of
    its rows.

    Returns:
        ``(X, index)``: features of the replayed rows, and their rows in ``td`` (for the labels).
    """
    rng = np.random.default_rng(seed)
    rows = np.sort(rows)
    rows = rows[np.argsort(td.groups[rows], kind="stable")]  # each battery's rows together, in time order
    groups = td.groups[rows]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    lo, hi = ATTACH_SPAN
    picked = [rows[a + int(rng.uniform(lo, hi) * (b - a)):b] for a, b in zip(starts, ends, strict=True)]
    index = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    sub = td.frame.iloc[index].copy()
    sub["battery_id"] = sub["battery_id"].astype(str) + "@attach"  # a battery split: the frame names them
    return features_from_frame(sub), index


def split_rows(groups: np.ndarray, seed: int = 0, test_size: float = 0.2, calib_size: float = 0.15,
               strata: np.ndarray | None = None) -> Split:
    """Split rows by battery into train, calibration (isotonic) and test parts, battery-disjoint.

    Batteries are shuffled and cut within each stratum (e.g. "has a fault at some reading"), so every
    part gets its share of faulty batteries even in small fleets. With fewer than 5 batteries (the
    Kaggle file) rows are split by time order instead.

    Args:
        groups: Battery id of every row.
        seed: Seed of the shuffle.
        test_size: Fraction of batteries held out for testing.
        calib_size: Fraction of batteries held out for calibration.
        strata: Per-row bool or int, reduced per battery with max (None = one stratum).

    Raises:
        TrainingDataError: If there are too few rows.
    """
    n = len(groups)
    if n < 50:
        raise TrainingDataError(f"{n} rows are too few to train and evaluate")
    ids, inverse = np.unique(groups, return_inverse=True)
    if len(ids) < 5:
        a, b = int(0.7 * n), int(0.8 * n)
        idx = np.arange(n)
        return Split(idx[:a], idx[a:b], idx[b:], by="time")
    stratum = np.zeros(len(ids), dtype=np.int64)
    if strata is not None:
        np.maximum.at(stratum, inverse, np.asarray(strata, dtype=np.int64))
    part = np.zeros(len(ids), dtype=np.int8)  # 0 train, 1 calib, 2 test
    rng = np.random.default_rng(seed)
    for s in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == s))
        n_test = int(round(test_size * len(members)))
        n_cal = int(round(calib_size * len(members)))
        part[members[:n_test]] = 2
        part[members[n_test:n_test + n_cal]] = 1
    row_part = part[inverse]
    train, calib, test = (np.flatnonzero(row_part == k) for k in range(3))
    return Split(train, calib, test, by="battery")


__all__ = ["ATTACH_SPAN", "QUICK_BATTERIES", "QUICK_CONFIG", "SILENT_FAULTS", "Split", "TrainingData", "attach_replays", "days_after_onset", "fleet_weights",
           "from_frame", "generate", "load",
           "read_frame", "split_rows"]
