"""The sink contract: what a new destination (a database, MQTT, e-mail, a webhook, files, S3)
implements — one class, run by :func:`streams.sinks.app.run_sinks` with everything else shared.

The runner consumes the sink's topics, decodes each fetch once, and calls :meth:`Sink.write` with
it; after ``write`` and :meth:`Sink.flush` returned for every sink of the topic, the fetch is
acknowledged (offsets commit after the data is where the sink put it: at-least-once). A sink that
raises is offered the same batch again with backoff — so ``write`` must be idempotent (a replay
changes nothing) — and a sink that cannot take a batch *now* raises
:class:`streams.errors.SinkBackpressureError` with ``retry_after``: the runner waits that long and
offers it again, holding the consumer meanwhile, instead of counting a failure.

Records of our own topics are written by our agents, so one that does not decode is a bug, retried
until someone looks. A sink that consumes *outside* input (the ground truth) names a dead-letter
topic for it (:attr:`Sink.dead_letter_topics`): there, a record that does not decode, or that
:meth:`Sink.reject` refuses, goes to that topic whole with the reason, and the batch goes on
without it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from streams.topics import ALERTS, PREDICTIONS


@dataclass(frozen=True)
class SinkBatch:
    """One fetch of one topic, decoded.

    Attributes:
        topic: The topic the records came from.
        records: The decoded values, in consumption order (per partition, in offset order).
        messages: The consumed records (``key, value, topic, partition, offset``), aligned with
            ``records``, for sinks that need keys or positions (a file named by its first offset).
    """

    topic: str
    records: list[dict[str, Any]]
    messages: Sequence[Any] = ()

    def __len__(self) -> int:
        return len(self.records)


class Sink(ABC):
    """A destination for predictions and alerts.

    Subclasses set :attr:`name` and :attr:`topics` and implement :meth:`write`; the rest has
    defaults. Blocking sinks (:attr:`blocking` true, the default) are called in a worker thread,
    so the consumer keeps its group membership while they wait on the network.
    """

    name: ClassVar[str]
    """Short name, for logs, metrics and agent names (``database``, ``mqtt``)."""
    topics: ClassVar[tuple[str, ...]] = (PREDICTIONS, ALERTS)
    """The topics the sink consumes."""
    blocking: ClassVar[bool] = True
    """Whether :meth:`write` blocks (it then runs in a thread)."""
    dead_letter_topics: ClassVar[dict[str, str]] = {}
    """Source topic -> dead-letter topic, for topics of outside input (see the module docstring)."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Connect, create what is missing (tables, buckets). Called once before any batch."""

    def reject(self, topic: str, record: dict[str, Any]) -> str | None:
        """Why a decoded record of a topic in :attr:`dead_letter_topics` cannot be used (the
        dead letter's reason), or ``None`` to take it."""
        return None

    @abstractmethod
    def write(self, batch: SinkBatch) -> None:
        """Take one batch. Idempotent: writing a batch again changes nothing."""

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make everything written so far durable (called before the batch is acknowledged)."""

    def timers(self) -> list[tuple[float, Callable[[], object]]]:
        """Periodic work: ``(interval_s, function)`` pairs (run in a thread)."""
        return []

    def report(self) -> None:  # noqa: B027 - optional hook
        """Export the sink's own metrics (called after every batch and every 5 s)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Called once at shutdown."""


__all__ = ["Sink", "SinkBatch"]
