"""Model artifacts on disk: a registry of versions, each a complete model, and a ``current`` pointer.

Layout of a model directory (``EVTWIN_MODEL_DIR``; the default is a setting, see
``streams.settings``)::

    versions/v1/                one complete model (below); never changed once written
    versions/v2/
    current                     the name of the version workers load (``v2``), replaced atomically
    registry.json               lifecycle: when each version was added, promoted and retired, and
                                the promotion history that :func:`rollback` walks back
    .lock                       serialises writers (``flock``)

A version directory holds::

    rul_xgb_model.joblib        XGBRegressor, quantile regression (P10/P50/P90 of RUL)
    failure_xgb_model.joblib    XGBClassifier, failure within the horizon (raw probability)
    failure_calibrator.joblib   IsotonicRegression fitted on held-out batteries
    anomaly_iforest.joblib      {"model": IsolationForest, "fill": medians, "reference": scores}
    anomaly_xgb_model.joblib    XGBClassifier, supervised fault detector (optional)
    feature_names.joblib        list of feature names the models were trained on
    metrics.json                held-out metrics
    model_card.json             version, features, metrics, dataset hash, created at, file hashes
    artifacts/                  plots of the held-out evaluation (optional)

**Lifecycle.** :func:`add_version` writes a new version as a *candidate*; :func:`promote` makes a
version *current* (the one before becomes *retired*); :func:`rollback` makes the previously current
version current again. Workers follow only the pointer (:func:`locate`), so a candidate never
serves until it is promoted. A version's created-at and metrics are in its own card;
``registry.json`` only records what happened to it after.

**Atomicity.** A version is written completely in a hidden staging directory, then renamed into
``versions/`` (atomic). The pointer and ``registry.json`` are each replaced with ``os.replace``.
Every card holds the SHA-256 of every other file, so :func:`load_model` detects a load that raced a
change and retries: a live agent never uses a half-written or mixed model.

**Old flat layout.** A model directory with the files directly in it (no ``versions/``, no
``current``) is one implicit current version and loads as before. The first registry write into it
adopts that model as a version (current), so the first promotion can be rolled back.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from models.errors import ModelError, ModelNotFoundError, RegistryError, UnknownVersionError

CARD_FILE = "model_card.json"
METRICS_FILE = "metrics.json"
FEATURES_FILE = "feature_names.joblib"
ATTACHMENTS_DIR = "artifacts"
"""Subdirectory of a version with its plots (not verified, not loaded)."""
VERSIONS_DIR = "versions"
CURRENT_FILE = "current"
REGISTRY_FILE = "registry.json"
LOCK_FILE = ".lock"
FLAT = "flat"
"""Name :func:`list_versions` gives a model in the old flat layout (not promotable by name)."""
CANDIDATE, CURRENT, RETIRED = "candidate", "current", "retired"
_VERSION = re.compile(r"v([1-9][0-9]*)")
_LOAD_ATTEMPTS = 5


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Version:
    """One model in a registry.

    Attributes:
        name: ``v<n>`` (or :data:`FLAT` for a model in the old flat layout).
        path: Its directory (a complete model: pass it anywhere a model directory is expected).
        status: ``candidate``, ``current`` or ``retired``.
        card: Its model card (``created_at``, ``version``, ``metrics``, ...).
        promoted_at: When it was last made current (ISO 8601), or None.
        retired_at: When it last stopped being current, or None.
        gate: What the promotion gate of ``evtwin retrain`` decided about it (``promoted`` or
            ``rejected``), or None when no gate ran.
    """

    name: str
    path: Path
    status: str
    card: dict[str, Any] = field(repr=False)
    promoted_at: str | None = None
    retired_at: str | None = None
    gate: str | None = None

    @property
    def created_at(self) -> str | None:
        return self.card.get("created_at")

    @property
    def model_version(self) -> str:
        """The model's own version (``ev-twin@<n>`` from MLflow, or ``file:<sha256[:12]>``)."""
        return str(self.card.get("version", "unknown"))

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.card.get("metrics") or {})


@dataclass(frozen=True)
class Promotion:
    """Outcome of :func:`promote` or :func:`rollback`: the version now current, and the one before."""

    current: Version
    previous: str | None

    @property
    def changed(self) -> bool:
        return self.previous != self.current.name


@dataclass(frozen=True)
class LoadedModel:
    """A model read by :func:`load_model`: where from, its fingerprint, card and objects."""

    path: Path
    version: str | None
    fingerprint: str
    card: dict[str, Any]
    objects: dict[str, Any]


# --- Names, pointer, registry file -------------------------------------------------------------


def version_name(text: str | int) -> str:
    """``v3`` for ``"v3"``, ``"3"`` or ``3``.

    Raises:
        UnknownVersionError: If ``text`` is not a version name.
    """
    raw = str(text).strip()
    name = raw if raw.startswith("v") else f"v{raw}"
    if not _VERSION.fullmatch(name):
        raise UnknownVersionError(f"{raw!r} is not a version name (they look like v3); "
                                  "`evtwin model list` shows the versions")
    return name


def _number(name: str) -> int:
    match = _VERSION.fullmatch(name)
    return int(match.group(1)) if match else 0


def _version_names(root: Path) -> list[str]:
    """Names of the complete versions under ``root``, oldest first."""
    try:
        entries = list((root / VERSIONS_DIR).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = [p.name for p in entries if _VERSION.fullmatch(p.name) and (p / CARD_FILE).is_file()]
    return sorted(names, key=_number)


def current_name(root: Path) -> str | None:
    """The version named by ``root/current``, or None when there is no pointer.

    Raises:
        ModelError: If the pointer is unreadable or does not hold a version name.
    """
    path = Path(root) / CURRENT_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"{path}: unreadable: {exc}") from exc
    if not _VERSION.fullmatch(text):
        raise ModelError(f"{path} holds {text[:40]!r}, not a version name; fix it with "
                         "`evtwin model promote VERSION`")
    return text


def _is_flat(root: Path) -> bool:
    return (root / CARD_FILE).is_file()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (readers see the old or the new file, never half)."""
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_registry(root: Path) -> dict[str, Any]:
    path = root / REGISTRY_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    except (ValueError, OSError) as exc:
        raise ModelError(f"{path}: unreadable registry: {exc}") from exc
    return {"versions": dict(data.get("versions") or {}), "history": list(data.get("history") or [])}


def _write_registry(root: Path, registry: Mapping[str, Any]) -> None:
    _write_atomic(root / REGISTRY_FILE, json.dumps(registry, indent=2, sort_keys=True) + "\n")


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Exclusive lock of the registry at ``root`` (one writer at a time, across processes)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# --- Reading -------------------------------------------------------------------------------------


def locate(root: Path) -> tuple[Path, str | None]:
    """The directory of the model workers should load from ``root``, and its version name.

    Returns:
        ``(root/versions/<current>, <current>)``, or ``(root, None)`` for the old flat layout.

    Raises:
        ModelNotFoundError: If no version is current (the message says how to train or promote
            one), or the pointer names a version that is absent.
        ModelError: If the pointer is unreadable.
    """
    root = Path(root)
    name = current_name(root)
    if name is not None:
        path = root / VERSIONS_DIR / name
        if not (path / CARD_FILE).is_file():
            raise ModelNotFoundError(f"{root / CURRENT_FILE} names {name}, which is not in {path.parent}; "
                                     "make another version current with `evtwin model promote VERSION`")
        return path, name
    if _is_flat(root):
        return root, None
    names = _version_names(root)
    if names:
        raise ModelNotFoundError(
            f"no current model in {root} (candidates: {', '.join(names)}); make one current with "
            f"`evtwin model promote {names[-1]}`")
    raise ModelNotFoundError(
        f"no model at {root} ({CARD_FILE} missing); train one with `evtwin train --quick --promote` "
        "(~1 min) or `evtwin train --promote`")


def _fingerprint(card_bytes: bytes) -> str:
    return hashlib.sha256(card_bytes).hexdigest()[:16]


def fingerprint(model_dir: Path) -> str | None:
    """Cheap identity of the model workers should load from ``model_dir``: changes whenever another
    version is made current (or a flat-layout model is replaced).

    Reads only the pointer and one ``model_card.json`` (a few kB): poll it every few seconds to
    hot-reload. It is a hash of the card (which holds the hash of every file), so adopting a flat
    model as a version does not change it: the same model is not reloaded.

    Returns:
        16 hex digits, or None when there is no current model.

    Raises:
        ModelError: If the pointer is unreadable.
    """
    try:
        path, _ = locate(Path(model_dir))
        data = (path / CARD_FILE).read_bytes()
    except (ModelNotFoundError, FileNotFoundError):
        return None
    return _fingerprint(data)


def read_card(model_dir: Path) -> dict[str, Any]:
    """The model card of the model in ``model_dir`` (its current version, for a registry).

    Raises:
        ModelNotFoundError: If there is no model there.
        ModelError: If the card is not valid JSON.
    """
    path, _ = locate(Path(model_dir))
    return _parse_card(path / CARD_FILE, _read_bytes(path / CARD_FILE))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelNotFoundError(f"{path} missing; retrain the model with `evtwin train`") from None
    except OSError as exc:
        raise ModelError(f"{path}: unreadable: {exc}") from exc


def _parse_card(path: Path, data: bytes) -> dict[str, Any]:
    try:
        return dict(json.loads(data))
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: unreadable model card: {exc}") from exc


def _load_files(path: Path, card: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any] | str:
    """The objects ``names`` that ``card`` lists, or the reason they cannot be read consistently."""
    hashes = card.get("files", {})
    objects: dict[str, Any] = {}
    for name in names:
        if name not in hashes:
            continue
        try:
            data = (path / name).read_bytes()
        except FileNotFoundError:
            return f"{path / name} missing (listed in {CARD_FILE}); retrain the model"
        if hashlib.sha256(data).hexdigest() != hashes[name]:
            return f"the files in {path} do not match {CARD_FILE} (corrupted or being replaced)"
        objects[name] = joblib.load(io.BytesIO(data))
    return objects


def load_model(model_dir: Path, names: tuple[str, ...]) -> LoadedModel:
    """Load the current model of ``model_dir``: its card and the joblib files ``names`` that the card
    lists, verified against it.

    Retries while a change is under way (a file missing or differing from the card).

    Raises:
        ModelNotFoundError: If there is no current model, or a listed file stays missing.
        ModelError: If the files keep disagreeing with the card, or cannot be unpickled.
    """
    root = Path(model_dir)
    problem = ""
    for attempt in range(_LOAD_ATTEMPTS):
        path, name = locate(root)
        try:
            data = (path / CARD_FILE).read_bytes()
        except FileNotFoundError:  # a flat model adopted into versions/ meanwhile
            problem = f"{path / CARD_FILE} vanished while loading"
        else:
            card = _parse_card(path / CARD_FILE, data)
            try:
                loaded = _load_files(path, card, names)
            except Exception as exc:  # unpickling errors come in many types
                raise ModelError(f"cannot load the model in {path}: {exc}") from exc
            if not isinstance(loaded, str):
                return LoadedModel(path, name, _fingerprint(data), card, loaded)
            problem = loaded
        time.sleep(0.05 * (attempt + 1))
    if "missing" in problem or "vanished" in problem:
        raise ModelNotFoundError(problem)
    raise ModelError(problem)


def load_artifacts(model_dir: Path, names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(card, objects)`` of :func:`load_model`; names absent from the card are absent from
    ``objects``."""
    loaded = load_model(model_dir, names)
    return loaded.card, loaded.objects


def _version(root: Path, name: str, registry: Mapping[str, Any], current: str | None) -> Version:
    path = root / VERSIONS_DIR / name
    card = _parse_card(path / CARD_FILE, _read_bytes(path / CARD_FILE))
    record = registry["versions"].get(name, {})
    promoted, retired = record.get("promoted_at"), record.get("retired_at")
    status = CURRENT if name == current else RETIRED if promoted else CANDIDATE
    return Version(name, path, status, card, promoted, retired, record.get("gate"))


def list_versions(model_dir: Path) -> list[Version]:
    """Every version of the registry at ``model_dir``, oldest first.

    A model in the old flat layout (with no pointer) is listed as one current version named
    :data:`FLAT`.

    Raises:
        ModelError: If the pointer, registry file or a card is unreadable.
    """
    root = Path(model_dir)
    registry, current = _read_registry(root), current_name(root)
    found = [_version(root, n, registry, current) for n in _version_names(root)]
    if current is None and _is_flat(root):
        card = _parse_card(root / CARD_FILE, _read_bytes(root / CARD_FILE))
        found.insert(0, Version(FLAT, root, CURRENT, card))
    return found


def get_version(model_dir: Path, name: str | int) -> Version:
    """The version ``name`` (``v3`` or ``3``) of the registry at ``model_dir``.

    Raises:
        UnknownVersionError: If there is no such version (the message names the ones there are).
    """
    root = Path(model_dir)
    name = version_name(name)
    names = _version_names(root)
    if name not in names:
        there = ", ".join(names) if names else "none"
        raise UnknownVersionError(f"no version {name} in {root} (versions: {there}); "
                                  "`evtwin model list` shows them")
    return _version(root, name, _read_registry(root), current_name(root))


def latest_candidate(model_dir: Path) -> Version | None:
    """The newest version that has never been current and that no gate rejected, or None."""
    candidates = [v for v in list_versions(model_dir) if v.status == CANDIDATE and v.gate != "rejected"]
    return candidates[-1] if candidates else None


def record_gate(model_dir: Path, name: str, decision: str, reason: str) -> None:
    """Note in ``registry.json`` what the promotion gate decided about version ``name``
    (:attr:`Version.gate`); a rejected candidate is then never the default of a promotion.

    Raises:
        UnknownVersionError: If there is no such version.
        ModelError: On an I/O error.
    """
    root = Path(model_dir)
    name = get_version(root, name).name
    try:
        with _locked(root):
            registry = _read_registry(root)
            record = registry["versions"].setdefault(name, {})
            record.update(gate=decision, gate_reason=reason, gate_at=_now())
            _write_registry(root, registry)
    except OSError as exc:
        raise ModelError(f"cannot record the gate's decision in {root}: {exc}") from exc


# --- Writing -------------------------------------------------------------------------------------


def save_artifacts(model_dir: Path, objects: Mapping[str, Any], card: dict[str, Any],
                   metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Write one complete model into ``model_dir`` (flat: the files directly in it), atomically.

    Files go to a temporary directory beside them first and are moved in with ``os.replace``,
    ``model_card.json`` last. Use :func:`add_version` to add a model to a registry.

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


def _next_name(root: Path, registry: Mapping[str, Any]) -> str:
    """A version name never used in ``root`` (also not by a version whose directory was removed)."""
    used = [_number(n) for n in registry["versions"]]
    with suppress(FileNotFoundError):
        used += [_number(p.name) for p in (root / VERSIONS_DIR).iterdir()]
    return f"v{max(used, default=0) + 1}"


def _staging(root: Path) -> Path:
    versions = root / VERSIONS_DIR
    versions.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".tmp-version-", dir=versions))
    path.chmod(0o755)  # mkdtemp makes it private; workers may run as another user
    return path


def _adopt_flat(root: Path, registry: dict[str, Any]) -> None:
    """Under the lock: turn a flat-layout model (with no pointer) into a current version.

    The files are copied and verified, the pointer is set, then the flat files are removed (a reader
    that raced the removal re-locates through the pointer).
    """
    if current_name(root) is not None or not _is_flat(root):
        return
    card_bytes = _read_bytes(root / CARD_FILE)
    card = _parse_card(root / CARD_FILE, card_bytes)
    staging = _staging(root)
    try:
        for name, digest in card.get("files", {}).items():
            shutil.copy2(root / name, staging / name)
            if sha256_file(staging / name) != digest:
                raise ModelError(f"{root / name} does not match {root / CARD_FILE}; retrain the model "
                                 "with `evtwin train --promote`")
        (staging / CARD_FILE).write_bytes(card_bytes)
        if (root / ATTACHMENTS_DIR).is_dir():
            shutil.copytree(root / ATTACHMENTS_DIR, staging / ATTACHMENTS_DIR)
        name = _next_name(root, registry)
        os.rename(staging, root / VERSIONS_DIR / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    now = _now()
    registry["versions"][name] = {"promoted_at": now, "adopted_from": "flat layout"}
    registry["history"].append(name)
    _write_registry(root, registry)
    _write_atomic(root / CURRENT_FILE, name + "\n")
    (root / CARD_FILE).unlink(missing_ok=True)
    for file in card.get("files", {}):
        (root / file).unlink(missing_ok=True)
    shutil.rmtree(root / ATTACHMENTS_DIR, ignore_errors=True)


def add_version(model_dir: Path, objects: Mapping[str, Any], card: dict[str, Any],
                metrics: Mapping[str, Any], attachments: Path | None = None) -> Version:
    """Write a new version (a candidate: not current) into the registry at ``model_dir``.

    Args:
        model_dir: Registry root (created). A flat-layout model there is adopted first.
        objects, card, metrics: As for :func:`save_artifacts`.
        attachments: A directory copied into the version as ``artifacts/`` (plots), or None.

    Returns:
        The new version (status ``candidate``).

    Raises:
        ModelError: On an I/O error.
    """
    root = Path(model_dir)
    try:
        staging = _staging(root)
        try:
            save_artifacts(staging, objects, card, metrics)
            if attachments is not None and Path(attachments).is_dir():
                shutil.copytree(attachments, staging / ATTACHMENTS_DIR)
            with _locked(root):
                registry = _read_registry(root)
                _adopt_flat(root, registry)
                name = _next_name(root, registry)
                os.rename(staging, root / VERSIONS_DIR / name)
                registry["versions"][name] = {"added_at": _now()}  # its name is never reused
                _write_registry(root, registry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise ModelError(f"cannot write a model version to {root}: {exc}") from exc
    return get_version(root, name)


def _make_current(root: Path, registry: dict[str, Any], name: str, previous: str | None,
                  push: bool) -> None:
    now = _now()
    records = registry["versions"]
    records.setdefault(name, {})["promoted_at"] = now
    records[name].pop("retired_at", None)
    if previous is not None and previous != name:
        records.setdefault(previous, {})["retired_at"] = now
    if push:
        registry["history"].append(name)
    _write_registry(root, registry)
    _write_atomic(root / CURRENT_FILE, name + "\n")


def promote(model_dir: Path, name: str | int,
            check: Callable[[Version], object] | None = None) -> Promotion:
    """Make version ``name`` current (workers switch to it at their next poll).

    Promoting the current version changes nothing. A flat-layout model there is adopted first, so
    this promotion can be rolled back to it.

    Args:
        model_dir: Registry root.
        name: ``v3`` or ``3``.
        check: Called with the version before it is made current (under the registry lock); an
            exception it raises cancels the promotion (e.g. ``Scorer.load`` of ``version.path``).

    Raises:
        UnknownVersionError: If there is no such version.
        ModelError: On an I/O error.
    """
    root = Path(model_dir)
    name = version_name(name)
    try:
        with _locked(root):
            registry = _read_registry(root)
            _adopt_flat(root, registry)
            target = get_version(root, name)  # raises when absent
            previous = current_name(root)
            if previous != name:
                if check is not None:
                    check(target)
                _make_current(root, registry, name, previous, push=True)
    except OSError as exc:
        raise ModelError(f"cannot promote {name} in {root}: {exc}") from exc
    return Promotion(get_version(root, name), previous)


def rollback(model_dir: Path, check: Callable[[Version], object] | None = None) -> Promotion:
    """Make the previously current version current again (repeat to go further back).

    ``check`` is as for :func:`promote`.

    Raises:
        RegistryError: If no version is current, or none was current before it.
        ModelError: On an I/O error.
    """
    root = Path(model_dir)
    try:
        with _locked(root):
            registry = _read_registry(root)
            current = current_name(root)
            if current is None:
                raise RegistryError(f"no current version in {root} to roll back from; make one current "
                                    "with `evtwin model promote VERSION`")
            history = [n for n in registry["history"] if (root / VERSIONS_DIR / n / CARD_FILE).is_file()]
            while history and history[-1] == current:
                history.pop()
            if not history:
                raise RegistryError(f"nothing to roll back to in {root}: no version was current before "
                                    f"{current}; make another one current with `evtwin model promote VERSION`")
            target = history[-1]
            if check is not None:
                check(get_version(root, target))
            registry["history"] = history
            _make_current(root, registry, target, current, push=False)
    except OSError as exc:
        raise ModelError(f"cannot roll back in {root}: {exc}") from exc
    return Promotion(get_version(root, target), current)


__all__ = ["ATTACHMENTS_DIR", "CANDIDATE", "CARD_FILE", "CURRENT", "CURRENT_FILE", "FEATURES_FILE", "FLAT",
           "LoadedModel", "METRICS_FILE", "Promotion", "REGISTRY_FILE", "RETIRED", "VERSIONS_DIR",
           "Version", "add_version", "current_name", "fingerprint", "get_version", "latest_candidate",
           "list_versions", "load_artifacts", "load_model", "locate", "promote", "read_card", "record_gate", "rollback",
           "save_artifacts", "sha256_file", "version_name"]
