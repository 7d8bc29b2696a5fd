"""Exceptions of the learned models (``models.scorer``, ``models.registry``).

Hierarchy::

    ModelError                  root of every error raised while saving, loading or scoring a model
    ├── ModelNotFoundError      an artifact is absent, or no version is current (the message says
    │                           how to train or promote one)
    ├── FeatureMismatchError    the stored feature names differ from ``models.features.FEATURE_NAMES``
    └── RegistryError           the model registry cannot do what was asked (nothing to roll back to)
        └── UnknownVersionError no version of that name in the registry
"""

from __future__ import annotations

from schemas.errors import EvTwinError


class ModelError(EvTwinError):
    """Root exception of the learned models."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """A model artifact is absent; the message says where it was expected and how to train one."""


class FeatureMismatchError(ModelError):
    """The model was trained on other features than the ones this code computes."""


class RegistryError(ModelError):
    """The model registry cannot do what was asked; the message says what to do instead."""


class UnknownVersionError(RegistryError, LookupError):
    """No version of that name in the registry; the message names the ones there are."""
