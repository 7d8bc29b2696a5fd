"""The one batch-agent runner every stream app uses: fetch → handle (retried until done) → ack.

An agent built by :func:`batch_agent` receives the records of one fetch as a list (see
:mod:`streams.runtime.batching`), hands them to ``handle`` in chunks, and acknowledges them only
after ``handle`` returned for every chunk, so Kafka offsets are committed after the work is durable:
at-least-once. ``handle`` failing does not lose the fetch and does not crash the agent:
:func:`handle_until_done` retries it with backoff (a :class:`streams.errors.SinkBackpressureError`
is waited out for the time it asks, without counting as a failure).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from streams.errors import SinkBackpressureError
from streams.runtime import metrics
from streams.runtime.heap import freeze_heap

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[Any]], Awaitable[None] | None]
"""Handles one chunk of records (Faust messages: ``key, value, topic, partition, offset``)."""

MAX_BACKOFF_S = 30.0


async def handle_until_done(handle: Handler, chunk: Sequence[Any], what: str = "batch") -> None:
    """Call ``handle(chunk)`` until it succeeds, backing off 0.5 s, 1 s, 2 s … up to 30 s.

    Records the pipeline cannot read never get here as errors (they are dead-lettered), so what
    fails is infrastructure — the broker, the registry, a database, a receiver — and waiting is the
    only way not to lose the chunk: it is not acknowledged until it succeeds. A retry may repeat
    some of the chunk's outputs (at-least-once; the sinks are idempotent).
    """
    delay = 0.5
    while True:
        try:
            result = handle(chunk)
            if inspect.isawaitable(result):
                await result
            return
        except SinkBackpressureError as exc:
            metrics.BACKPRESSURE.inc()
            log.info("%s of %d records: %s", what, len(chunk), exc)
            await asyncio.sleep(exc.retry_after)
        except Exception as exc:
            metrics.BATCH_FAILURES.inc()
            first = chunk[0] if chunk else None
            log.warning("%s of %d records failed (%s: %s); retrying in %.1f s, not acknowledged "
                        "(first: topic %s partition %s offset %s)", what, len(chunk),
                        type(exc).__name__, exc, delay, getattr(first, "topic", "?"),
                        getattr(first, "partition", "?"), getattr(first, "offset", "?"))
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


def batch_agent(app: Any, topic: str, name: str, handle: Handler, *, partitions: int,
                chunk_size: int | None = None,
                on_fetch: Callable[[Sequence[Any]], Awaitable[None] | None] | None = None) -> None:
    """Add agent ``name`` to ``app``: every fetch of ``topic`` is handled in chunks of at most
    ``chunk_size`` records (all at once when ``None``), then acknowledged.

    Args:
        app: A :class:`streams.runtime.batching.TwinApp`.
        topic: The topic to consume (raw bytes; ``handle`` decodes).
        name: The agent's name (shown in Faust's logs).
        handle: Called with each chunk; may be a coroutine function.
        partitions: Partition count of ``topic``.
        chunk_size: Largest chunk handed to ``handle``.
        on_fetch: Called with every fetch before it is handled (e.g. to follow the assignment).
    """
    from streams.runtime.batching import deliver_in_batches
    from streams.runtime.faust_app import raw_topic

    fetches = deliver_in_batches(app, raw_topic(app, topic, partitions))

    async def run(stream: Any) -> None:
        ack_fetch = app.consumer.ack_fetch
        frozen = False
        async for messages in stream:
            if on_fetch is not None:  # e.g. restoring partition state: retried like a batch
                await handle_until_done(on_fetch, messages, f"{name} (before the fetch)")
            size = chunk_size or max(1, len(messages))
            for start in range(0, len(messages), size):
                await handle_until_done(handle, messages[start:start + size], name)
            ack_fetch(messages)  # durable: now the offsets may be committed
            if not frozen:  # after the first fetch: the models, Faust and the clients are up
                freeze_heap()
                frozen = True

    app.agent(fetches, name=name)(run)


__all__ = ["Handler", "batch_agent", "handle_until_done"]
