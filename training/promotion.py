"""Promotion and rollback: make a version of the model registry current, and keep MLflow in step.

The ``current`` pointer of the model directory (``models.registry``) is what score workers follow
and the only thing a promotion needs. When the version was registered in MLflow at training time
and a tracking URI is given, the alias ``champion`` of its registered models is moved to it (or, when
the version now current is not in MLflow, removed from the one it replaced); an MLflow failure is
reported in the result, never raised: promotion does not depend on MLflow.

A version that does not load with this code (a feature mismatch, say) is refused, so a promotion
never leaves workers on a model they cannot use. The gate that decides *whether* to promote a
candidate belongs here too when it comes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models import registry
from models.errors import RegistryError
from models.registry import Promotion, Version
from training.errors import TrainingError


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`promote` or :func:`rollback` did.

    Attributes:
        promotion: The version now current, and the one before.
        mlflow: What happened to the MLflow alias (one line), or None when MLflow was not involved.
        mlflow_failed: True when the alias could not be moved (the disk pointer moved regardless).
    """

    promotion: Promotion
    mlflow: str | None = None
    mlflow_failed: bool = False


def _check(version: Version) -> None:
    """Refuse a version the scorer cannot load (raises its ``ModelError``)."""
    from models.scorer import Scorer

    Scorer.load(version.path)


def _current(root: Path) -> Version | None:
    name = registry.current_name(root)
    return registry.get_version(root, name) if name else None


def _sync_mlflow(tracking_uri: str | None, now: Version, before: Version | None) -> tuple[str | None, bool]:
    """Move (or remove) the alias ``champion``: ``(what happened or None, whether it failed)``."""
    ours = now.card.get("mlflow_registered")
    theirs = before.card.get("mlflow_registered") if before is not None else None
    if tracking_uri is None or not (ours or theirs):
        return None, False
    from training import tracking

    try:
        if ours:
            tracking.set_champion(tracking_uri, ours, now.card.get("mlflow_run_id"))
            return f"MLflow: alias {tracking.ALIAS} -> {now.model_version}", False
        removed = tracking.clear_champion(tracking_uri, theirs or {})
    except TrainingError as exc:
        return f"MLflow: alias {tracking.ALIAS} not moved: {exc}", True
    if not removed:
        return None, False
    return (f"MLflow: alias {tracking.ALIAS} removed from {', '.join(removed)} ({now.name} was not "
            "logged to MLflow)"), False


def _result(promotion: Promotion, before: Version | None, tracking_uri: str | None) -> PromotionResult:
    if not promotion.changed:
        return PromotionResult(promotion)
    note, failed = _sync_mlflow(tracking_uri, promotion.current, before)
    return PromotionResult(promotion, note, failed)


def promote(model_dir: Path, version: str | int | None = None, *,
            tracking_uri: str | None = None) -> PromotionResult:
    """Make ``version`` (default: the newest candidate) current in the registry at ``model_dir``.

    Args:
        model_dir: The model registry (``EVTWIN_MODEL_DIR``).
        version: ``v3`` or ``3``; None = the newest version never made current.
        tracking_uri: MLflow tracking URI for the alias ``champion``; None = leave MLflow alone.

    Raises:
        RegistryError: If ``version`` is None and there is no candidate.
        UnknownVersionError: If there is no such version.
        ModelError: If the version does not load (it stays where it was), or on an I/O error.
    """
    root = Path(model_dir)
    if version is None:
        candidate = registry.latest_candidate(root)
        if candidate is None:
            raise RegistryError(f"no candidate in {root}: train one with `evtwin train`, or name the "
                                "version to promote (`evtwin model list` shows them)")
        version = candidate.name
    before = _current(root)
    return _result(registry.promote(root, version, check=_check), before, tracking_uri)


def rollback(model_dir: Path, *, tracking_uri: str | None = None) -> PromotionResult:
    """Make the previously current version current again (see ``models.registry.rollback``).

    Raises:
        RegistryError: If there is nothing to roll back to.
        ModelError: If that version does not load (nothing changes), or on an I/O error.
    """
    root = Path(model_dir)
    before = _current(root)
    return _result(registry.rollback(root, check=_check), before, tracking_uri)


__all__ = ["PromotionResult", "promote", "rollback"]
