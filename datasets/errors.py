"""Exceptions of the datasets package.

Hierarchy::

    DatasetError                root of every error raised by ``datasets``
    └── DatasetNotFoundError    a data file is absent (the message says where to put it)
"""

from __future__ import annotations

from schemas.errors import EvTwinError


class DatasetError(EvTwinError):
    """Root exception of ``datasets``."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file is absent; the message says where it is expected and how to obtain it."""
