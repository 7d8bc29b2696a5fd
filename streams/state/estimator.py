"""The twin's per-battery state in the score workers: ``models.state`` kept as partition state.

Each battery's :data:`models.state.State` (the filtered SoH and its fade-law fit, stress exposure,
thermal residual, cell-spread trends, last seen, fault score) lives in a
:class:`streams.runtime.partition_state.PartitionState` keyed by battery id, in the partition of
the telemetry topic the battery's readings arrive on. Every batch runs ``models.state.update``
(through ``models.features.replay``, the very function training replays the dataset with) on its
readings in order, hands each reading's state to the features, and writes the changed states to the
changelog ``<app id>-twin-changelog`` with the batch's outputs, before the batch is acknowledged.
A worker that takes over a partition restores its states from there first (:meth:`assign`).

A state is :data:`models.state.SIZE` float64 values, stored packed (``models.state.pack``, exact)
as the changelog value itself (no JSON: base64 and JSON text cost ~4 µs per value, more than the
state update of a reading): :data:`STATE_BYTES` bytes of value per battery, under the 1 KB budget. A reading not newer than the battery's last one (a redelivery after a crash, when
the restored state is ahead of the committed offsets) leaves the state unchanged, so a replay does
not count a reading twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from models import state as twin
from models.features import replay
from streams.runtime.partition_state import PartitionState

STATE_BYTES = len(twin.pack(twin.new_state()))
"""Bytes of one battery's changelog value (the packed state)."""


class TwinEstimator:
    """The per-battery states of the partitions one score worker owns.

    Args:
        changelog: The changelog topic (see :func:`streams.topics.state_topic_specs`).
        fault_open: Fault score above which a battery is flagged (``models.state.update_fault``).
        fault_clear: Fault score below which the flag is cleared.
    """

    def __init__(self, changelog: str, fault_open: float = 0.5, fault_clear: float = 0.3) -> None:
        self.states: PartitionState[twin.State] = PartitionState(changelog, twin.pack, twin.unpack,
                                                                      binary=True)
        self.fault_open, self.fault_clear = fault_open, fault_clear

    def update(self, batteries: Sequence[str], partitions: Sequence[int], cols: Mapping[str, np.ndarray],
               mode: np.ndarray, ts_ms: np.ndarray, taken: list[bool] | None = None) -> np.ndarray:
        """Take a batch's readings (in order) into their batteries' states.

        Args:
            batteries: Battery id of each reading.
            partitions: Its telemetry partition.
            cols, mode: The readings' columns (``models.features.record_columns``).
            ts_ms: Event times, ms.
            taken: Filled with whether each reading was taken (not a redelivery).

        Returns:
            Each reading's state after it, float64 (n, ``models.state.SIZE``).
        """
        tables, dirty = self.states.tables, self.states.dirty
        view: dict[str, twin.State] = {}
        owner: dict[str, int] = {}
        for battery, p in zip(batteries, partitions, strict=True):
            if battery in owner:
                continue
            owner[battery] = p
            s = tables.setdefault(p, {}).get(battery)
            if s is not None:
                view[battery] = s
        out = replay(batteries, cols, mode, ts_ms, view, taken)
        for battery, p in owner.items():
            tables[p][battery] = view[battery]
            dirty.setdefault(p, set()).add(battery)
        return out

    def update_faults(self, batteries: Sequence[str], partitions: Sequence[int], scores: np.ndarray,
                      states: np.ndarray, taken: Sequence[bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Take the readings' anomaly scores into their batteries' fault scores, in order;
        return each reading's fault score and flag.

        Args:
            batteries, partitions: As for :meth:`update`.
            scores: Each reading's anomaly score.
            states: What :meth:`update` returned for the same readings: each reading's service
                day is read from its own state, so a batch holding several days of one battery
                (a backlog) scores as reading by reading would (and as training replays it).
            taken: From :meth:`update`: a reading it did not take (a redelivery after a crash)
                gets its battery's score as it stands, without counting its anomaly score again.
        """
        tables = self.states.tables
        fault = np.empty(len(batteries))
        flag = np.zeros(len(batteries), dtype=bool)
        step, lo, hi = twin.update_fault, self.fault_clear, self.fault_open
        days = states[:, twin.DAY].tolist()
        ok = taken if taken is not None else [True] * len(batteries)
        for k, (battery, p, score, day, new) in enumerate(zip(batteries, partitions, scores.tolist(), days,
                                                              ok, strict=True)):
            s = tables[p][battery]
            fault[k], flag[k] = step(s, score, hi, lo, day) if new else twin.fault_now(s)
        return fault, flag

    def get(self, partition: int, battery: str) -> twin.State | None:
        """The state of ``battery`` on ``partition`` (None when never seen there)."""
        return self.states.get(partition, battery)

    def flush_changes(self, produce: Callable[..., None]) -> int:
        """Write the states changed since the last call to the changelog."""
        return self.states.flush_changes(produce)

    def assign(self, partitions: Iterable[int], producer: Any, consumer_factory: Callable[[], Any]) -> int:
        """Restore the states of ``partitions`` from the changelog; return how many."""
        return self.states.assign(partitions, producer, consumer_factory)

    def revoke(self, partitions: Iterable[int]) -> None:
        """Drop the states of partitions this worker no longer owns."""
        self.states.revoke(partitions)

    def __len__(self) -> int:
        return len(self.states)


__all__ = ["STATE_BYTES", "TwinEstimator"]
