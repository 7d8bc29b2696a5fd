"""The sink contract: what a new destination (a database, MQTT, e-mail, a webhook, files, S3)
implements — one class, run by :func:`streams.sinks.app.run_sinks` with everything else shared.

The runner consumes the sink's topics, decodes each fetch once, and calls :meth:`Sink.write` with
it; after ``write`` and :meth:`Sink.flush` returned for every sink of the topic, the fetch is
acknowledged (offsets commit after the data is where the sink put it: at-least-once). A sink that
raises is offered the same batch again with backoff — so ``write`` must be idempotent (a replay
changes nothing) — and a sink that cannot take a batch *now* raises
:class:`streams.errors.SinkBackpressureError` with ``retry_after``: the runner waits that long and
offers it again, holding the consumer meanwhile, instead of counting a failure.
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

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Connect, create what is missing (tables, buckets). Called once before any batch."""

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
