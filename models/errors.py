"""Exceptions of the learned models (``models.scorer``, ``models.registry``).

Hierarchy::

    ModelError                  root of every error raised while saving, loading or scoring a model
    ├── ModelNotFoundError      an artifact is absent (the message says how to train one)
    └── FeatureMismatchError    the stored feature names differ from ``models.features.FEATURE_NAMES``
"""

from __future__ import annotations


class ModelError(Exception):
    """Root exception of the learned models."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """A model artifact is absent; the message says where it was expected and how to train one."""


class FeatureMismatchError(ModelError):
    """The model was trained on other features than the ones this code computes."""
