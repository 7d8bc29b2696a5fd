"""Errors of the stream apps::

    StreamsError (EvTwinError)
    ├── CliError               a user error on the command line (exit code 2 or 1)
    ├── BenchError             a benchmark phase did not complete
    └── SinkError              a sink could not be set up or failed for good
        └── SinkBackpressureError   a sink asks to be retried later (not a failure)
"""

from __future__ import annotations

from schemas.errors import EvTwinError


class StreamsError(EvTwinError):
    """Root of every error raised by :mod:`streams`."""


class CliError(StreamsError):
    """A user error: the message says what was wrong and how to fix it."""


class BenchError(StreamsError):
    """A benchmark phase did not complete (the message names the log to read)."""


class SinkError(StreamsError):
    """A sink could not be set up, or failed in a way retrying will not fix."""


class SinkBackpressureError(SinkError):
    """A sink cannot take a batch now; the runner waits ``retry_after`` seconds and offers the same
    batch again (nothing is acknowledged meanwhile).

    Attributes:
        retry_after: Seconds to wait before the next attempt.
        topic: The topic of the batch, when the sink knows it.
        partition: The partition, when the backpressure concerns one.
    """

    def __init__(self, retry_after: float, topic: str | None = None,
                 partition: int | None = None) -> None:
        super().__init__(f"sink backpressure on {topic or 'its input'}"
                         + (f"[{partition}]" if partition is not None else "")
                         + f": retry in {retry_after:g} s")
        self.retry_after = retry_after
        self.topic = topic
        self.partition = partition


__all__ = ["BenchError", "CliError", "SinkBackpressureError", "SinkError", "StreamsError"]
