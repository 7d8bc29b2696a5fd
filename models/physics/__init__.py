"""Vectorised EV battery-pack physics: ECM, thermal, aging, faults, usage and the live fleet.

Import the submodules you need (``models.physics.fleet.Fleet``); this package file stays import-light.
"""

from __future__ import annotations

from models.physics.errors import PhysicsError

__all__ = ["PhysicsError"]
