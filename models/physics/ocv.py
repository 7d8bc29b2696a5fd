"""Open-circuit voltage of an NMC/graphite cell versus state of charge.

Source: NMC111/graphite Sanyo UR18650E, Schmalstieg et al., J. Power Sources 257 (2014) Fig. 1 and
Ecker et al., J. Power Sources 248 (2014) 839-851 (0-10 % SoC), as digitised in NREL BLAST-Lite;
resampled here on a 5 % grid and rounded to 1 mV.
"""

from __future__ import annotations

import numpy as np

from models.physics.errors import PhysicsError

SOC_GRID = np.linspace(0.0, 1.0, 21)
"""SoC break points (fraction 0..1)."""

OCV_V = np.array(
    [3.331, 3.420, 3.491, 3.544, 3.581, 3.608, 3.627, 3.641, 3.655, 3.673, 3.697,
     3.732, 3.775, 3.821, 3.869, 3.915, 3.965, 4.019, 4.073, 4.118, 4.162]
)
"""Cell OCV (V) at ``SOC_GRID``."""


def ocv(soc: np.ndarray | float) -> np.ndarray:
    """Cell open-circuit voltage.

    Args:
        soc: State of charge as a fraction (0..1); clipped to the table.

    Returns:
        OCV per cell (V), same shape as ``soc``.
    """
    return np.interp(soc, SOC_GRID, OCV_V)


def soc_from_ocv(v_cell: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`ocv` (the table is strictly increasing).

    Args:
        v_cell: Cell OCV (V).

    Returns:
        SoC fraction (0..1).

    Raises:
        PhysicsError: If the table is not monotonic (corrupted parameters).
    """
    if np.any(np.diff(OCV_V) <= 0):
        raise PhysicsError("OCV table must be strictly increasing")
    return np.asarray(np.interp(v_cell, OCV_V, SOC_GRID))


def mean_ocv() -> float:
    """Mean OCV over SoC 0..1 (V), i.e. the energy per Ah of a quasi-static full discharge."""
    return float(np.trapezoid(OCV_V, SOC_GRID))
