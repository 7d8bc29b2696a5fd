"""Exceptions of the physics package.

Hierarchy::

    PhysicsError            root of every error raised by ``models.physics``
"""

from __future__ import annotations

from schemas.errors import EvTwinError


class PhysicsError(EvTwinError):
    """Root exception of ``models.physics`` (bad parameters, bad arguments)."""
