"""Exceptions of the physics package.

Hierarchy::

    PhysicsError            root of every error raised by ``models.physics``
"""

from __future__ import annotations


class PhysicsError(Exception):
    """Root exception of ``models.physics`` (bad parameters, bad arguments)."""
