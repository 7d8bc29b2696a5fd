"""Exceptions of the training package.

Hierarchy::

    TrainingError               root of every error raised by ``training``
    └── TrainingDataError       the training data is absent, too small or lacks labels
"""

from __future__ import annotations

from schemas.errors import EvTwinError


class TrainingError(EvTwinError):
    """Root exception of ``training``."""


class TrainingDataError(TrainingError):
    """The training data cannot be used (absent, too few batteries, missing label columns)."""
