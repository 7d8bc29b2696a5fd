"""Model artifacts on disk: atomic save, verified load, and a cheap fingerprint for hot reload.

Layout of a model directory (default ``models/`` of the repository; files git-ignored)::

    rul_xgb_model.joblib        XGBRegressor, quantile regression (P10/P50/P90 of RUL)
    failure_xgb_model.joblib    XGBClassifier, failure within the horizon (raw probability)
    failure_calibrator.joblib   IsotonicRegression fitted on held-out batteries
    anomaly_iforest.joblib      {"model": IsolationForest, "fill": medians, "reference": scores}
    anomaly_xgb_model.joblib    XGBClassifier, supervised fault detector (optional)
    feature_names.joblib        list of feature names the models were trained on
    metrics.json                held-out metrics
    model_card.json             version, features, metrics, dataset hash, created at, file hashes

**Atomicity.** :func:`save_artifacts` writes everything into a temporary directory beside the
target, then moves the files in with ``os.replace`` (atomic per file), ``model_card.json`` last. The
card holds the SHA-256 of every other file, so :func:`load_artifacts` detects a load that raced a
replacement and retries: a live agent never uses a half-written or mixed model.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib

from models.errors import ModelError, ModelNotFoundError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent
"""``models/`` of the repository."""
CARD_FILE = "model_card.json"
METRICS_FILE = "metrics.json"
FEATURES_FILE = "feature_names.joblib"
_LOAD_ATTEMPTS = 5


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(model_dir: Path) -> str | None:
    """Cheap identity of the model in ``model_dir``: changes whenever a model is promoted.

    Reads only ``model_card.json`` (a few kB): poll it every few seconds to hot-reload.

    Returns:
        SHA-256 (first 16 hex digits) of the card's bytes, or None when there is no model.
    """
    try:
        data = (Path(model_dir) / CARD_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return hashlib.sha256(data).hexdigest()[:16]


def read_card(model_dir: Path) -> dict[str, Any]:
    """The model card of ``model_dir``.

    Raises:
        ModelNotFoundError: If there is no card (no model trained there).
        ModelError: If the card is not valid JSON.
    """
    path = Path(model_dir) / CARD_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"no model at {model_dir} ({CARD_FILE} missing); train one with `evtwin train --quick` "
            "(~1 min) or `evtwin train`") from None
    except (ValueError, OSError) as exc:
        raise ModelError(f"{path}: unreadable model card: {exc}") from exc


def save_artifacts(model_dir: Path, objects: Mapping[str, Any], card: dict[str, Any],
                   metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Write a complete model atomically (see the module docstring).

    Args:
        model_dir: Target directory (created).
        objects: File name (``*.joblib``) -> object to pickle with joblib.
        card: Model card; ``files`` (name -> SHA-256) is added, and ``version`` =
            ``file:<sha256[:12]>`` of the model files when the card has none.
        metrics: Held-out metrics, written to ``metrics.json``.

    Returns:
        The card as written.

    Raises:
        ModelError: On an I/O error.
    """
    model_dir = Path(model_dir)
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-model-", dir=model_dir))
        try:
            for name, obj in objects.items():
                joblib.dump(obj, tmp / name)
            (tmp / METRICS_FILE).write_text(json.dumps(dict(metrics), indent=2) + "\n")
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
            card = dict(card, files=files)
            if not card.get("version"):
                joined = "".join(h for n, h in sorted(files.items()) if n != METRICS_FILE)
                card["version"] = "file:" + hashlib.sha256(joined.encode()).hexdigest()[:12]
            (tmp / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
            for name in sorted(card["files"]):
                os.replace(tmp / name, model_dir / name)
            os.replace(tmp / CARD_FILE, model_dir / CARD_FILE)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise ModelError(f"cannot write the model to {model_dir}: {exc}") from exc
    return card


def _load_once(model_dir: Path, names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Load the card and ``names``; None when a file's hash does not match the card (a race)."""
    card = read_card(model_dir)
    hashes = card.get("files", {})
    objects: dict[str, Any] = {}
    for name in names:
        path = model_dir / name
        if name not in hashes:
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelNotFoundError(f"{path} missing (listed in {CARD_FILE}); retrain the model") from None
        if hashlib.sha256(data).hexdigest() != hashes[name]:
            return None
        objects[name] = joblib.load(io.BytesIO(data))
    return card, objects


def load_artifacts(model_dir: Path, names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the card and the joblib files ``names`` that the card lists, verified against it.

    Retries while a replacement is under way (a file's hash differs from the card's).

    Returns:
        ``(card, objects)``; names absent from the card are absent from ``objects``.

    Raises:
        ModelNotFoundError: If the card or a listed file is missing.
        ModelError: If the files keep disagreeing with the card, or cannot be unpickled.
    """
    model_dir = Path(model_dir)
    for attempt in range(_LOAD_ATTEMPTS):
        try:
            loaded = _load_once(model_dir, names)
        except ModelError:
            raise
        except Exception as exc:  # unpickling errors come in many types
            raise ModelError(f"cannot load the model in {model_dir}: {exc}") from exc
        if loaded is not None:
            return loaded
        time.sleep(0.05 * (attempt + 1))
    raise ModelError(f"the files in {model_dir} do not match {CARD_FILE} (corrupted or being replaced)")


__all__ = ["CARD_FILE", "DEFAULT_MODEL_DIR", "FEATURES_FILE", "METRICS_FILE", "fingerprint",
           "load_artifacts", "read_card", "save_artifacts", "sha256_file"]
