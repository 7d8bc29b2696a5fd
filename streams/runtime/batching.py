"""Batch delivery for Faust: the records of a fetch reach an agent as one event, not one each.

faust-streaming delivers every record on its own: per record it races the delivery against a
flow-suspension event (``Service.wait_first`` makes two asyncio tasks), takes a lock in the
Conductor, wraps the record in an Event, queues it for the stream and runs the stream's
processors. Profiled with py-spy (``--gil``) on our score worker, that machinery took ~75 % of the
CPU — ~110 µs per event, against ~25 µs for decode, validation, features, both models and encode.

:class:`BatchingConsumer` keeps Faust's consumer — group membership, rebalances, offset tracking,
acks, commits, gap handling — and changes one thing for the topics registered with
:func:`deliver_in_batches`: the records of one ``getmany`` fetch are tracked as unacked and put on
an in-memory channel as one list (a :class:`Fetch`), with one ``wait_first`` per fetch. The agent iterating
that channel acknowledges the fetch (:meth:`BatchingConsumer.ack_fetch`) only after its outputs are
on the broker, so offsets are committed after the work is durable: at-least-once, as before.

A fetch is tracked and acknowledged as one: Faust's weak set of unacknowledged records holds one
:class:`PendingFetch` per fetch instead of every record (a ``WeakSet.add`` and ``discard`` each,
plus Faust's per-record ``ack``: ~8 % of the database sink's and the MQTT bridge's CPU in a py-spy
profile at 10,000 events/s), and the acknowledgement adds the fetch's offsets per partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

log = logging.getLogger(__name__)

FETCH_PAUSE_S = 0.05


def pace_fetches(fetcher: Any, pause_s: float = FETCH_PAUSE_S) -> None:
    """Make aiokafka's ``fetcher`` send a fetch no sooner than ``pause_s`` after the previous one
    was sent.

    A Kafka broker holds a fetch until ``fetch_min_bytes`` arrived or ``fetch_max_wait_ms``
    passed (a long poll). The embedded noida-db ignores both and answers at once (~0.15 ms), so
    aiokafka's fetcher, which sends the next fetch as soon as one returns, spins: on an idle topic
    ~5,000 empty fetches a second, ~0.2–0.9 of a core in the consumer's thread (holding the GIL
    against the scoring thread) plus ~0.4 of a core in the broker; on a busy one, a consumer that
    keeps up gets a few records per fetch and pays the fetch, the hand-over to its agent and the
    acknowledgement for each few. With the pause a fetch brings what arrived in ``pause_s`` at
    least: at most 1/``pause_s`` fetches a second, at most ``pause_s`` of added latency per hop.
    Measured with ``evtwin bench e2e`` (10,000 packs, 2 workers, 2 cores, 60 s, one run each):
    pausing after empty fetches only, 7,565 events/s into the table (p99 telemetry→row 27 s);
    after every fetch, 10 ms: 8,663 (11 s); 25 ms: 9,302 (7.4 s). Later, once the pipeline kept
    up (5-minute runs, readings spread over each second): 25 ms, p99 2.15 s, 0.72 of a core for
    the two workers; 50 ms, p99 1.10 s, 0.66 — bigger batches, less spent per batch. A consumer
    behind its topic still fetches up to ``max_partition_fetch_bytes`` per partition each time,
    so the pause does not cap its catching up.
    """
    fetch = fetcher._proc_fetch_request

    async def paced(assignment: Any, node_id: int, request: Any) -> bool:
        started = time.monotonic()
        has_records = await fetch(assignment, node_id, request)
        rest = pause_s - (time.monotonic() - started)
        if rest > 0:
            # Cancelled by close() or a lost assignment, return as aiokafka's own fetch does:
            # its waiters expect a result, not the error (the fetch itself is done).
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(rest)
        return bool(has_records)

    fetcher._proc_fetch_request = paced


class PacedConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, with :func:`pace_fetches` on its fetcher and a
    crash when the consumer's group coordination dies (:func:`crash_when_coordination_dies`)."""

    async def on_start(self) -> None:
        await super().on_start()
        consumer = cast(Any, self._consumer)
        pace_fetches(consumer._fetcher)
        task = getattr(consumer._coordinator, "_coordination_task", None)
        if task is not None:
            crash_when_coordination_dies(task, self)


def crash_when_coordination_dies(task: asyncio.Future[Any], service: Any) -> None:
    """Crash ``service`` (the consumer thread, and so the Faust app: the process exits non-zero)
    when aiokafka's group-coordination ``task`` ends with an error while it is not stopping.

    aiokafka logs "Unexpected error in coordinator routine" and ends the task; the consumer then
    never joins its group again, and Faust, with no partitions to fetch, never asks it anything
    that would raise the error: a live process doing nothing, holding its place in the group.
    Seen in CI against noida-db, which answered a SyncGroup with an empty assignment that aiokafka
    could not decode; the bench waited on the silent worker until the test's timeout. Exiting
    lets the supervisor (evtwin up, compose's restart policy, Kubernetes) start a fresh one.
    """

    def done(t: asyncio.Future[Any]) -> None:
        if t.cancelled() or service.should_stop:
            return
        exc = t.exception()
        if exc is None:
            return
        log.error("the consumer's group coordination stopped (%s); exiting so that the process "
                  "is restarted and joins its group again", exc)
        # Crash from the app's loop (the consumer thread's parent): mode walks the services up
        # to the worker there, which stops and exits non-zero.
        loop = getattr(service, "parent_loop", None) or t.get_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(service.crash(exc)))

    task.add_done_callback(done)


class PendingFetch:
    """A delivered fetch's place in Faust's weak set of unacknowledged records.

    Faust waits for that set to empty before it commits on a rebalance or a stop, and a record
    leaves it when acknowledged or when nothing references it any more (a revocation cleared the
    agent's queue): the :class:`Fetch` holds this token, so the same holds for the fetch as a whole.
    ``acked`` and ``refcount`` are what Faust reads of its members.
    """

    __slots__ = ("__weakref__", "acked", "refcount", "size")

    def __init__(self, size: int) -> None:
        self.acked = False
        self.refcount = 1
        self.size = size

    def __repr__(self) -> str:
        return f"<fetch of {self.size} records, {'acked' if self.acked else 'not acked'}>"


class Fetch(list[Any]):
    """The records of one fetch of one topic, in consumption order, as a batch agent gets them.

    Attributes:
        offsets: Partition (``TP``) -> the fetch's offsets in it, ascending.
        pending: Its token in Faust's unacknowledged set (:class:`PendingFetch`).
    """

    __slots__ = ("offsets", "pending")

    def __init__(self) -> None:
        super().__init__()
        self.offsets: dict[Any, list[int]] = {}
        self.pending = PendingFetch(0)

    def add(self, message: Any) -> None:
        self.append(message)
        offsets = self.offsets.get(message.tp)
        if offsets is None:
            self.offsets[message.tp] = [message.offset]
        else:
            offsets.append(message.offset)


class BatchingConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, delivering the records of batch topics one fetch at a time."""

    def _new_consumer_thread(self) -> PacedConsumerThread:
        return PacedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def batch_channels(self) -> dict[str, Any]:
        """Topic name -> channel receiving a :class:`Fetch` per fetch (see deliver_in_batches)."""
        return cast(TwinApp, self.app).batch_channels

    def ack_fetch(self, fetch: Fetch) -> None:
        """Acknowledge every record of a delivered ``fetch``: what Faust's ``ack`` does for one
        record (its offset joins the acknowledged offsets of its partition, from which commits
        take the highest without a gap), once per partition. A second call changes nothing."""
        with ack_lock:  # the lock Faust's ack takes: the bookkeeping is shared by every record
            pending = fetch.pending
            if pending.acked:
                return
            pending.acked = True
            cast(Any, self._unacked_messages).discard(pending)  # Faust's records and our tokens
            try:
                if fetch and self.app.topics.acks_enabled_for(fetch[0].topic):
                    for tp, offsets in fetch.offsets.items():
                        committed = self._committed_offset[tp]
                        index = self._acked_index[tp]
                        fresh = [o for o in offsets
                                 if o not in index and (committed is None or o >= committed)]
                        index.update(fresh)
                        self._acked[tp].extend(fresh)
                        self._n_acked += len(fresh)
            finally:
                notify(self._waiting_for_ack)

    async def _deliver_batches(self, batches: dict[str, Fetch]) -> bool:
        """Put each batch on its channel; False when a rebalance cleared a full channel first.

        Faust clears the agents' queues when partitions are revoked, and mode's
        ``ThrowableQueue.clear`` cancels the puts waiting on them: that CancelledError is about
        the put, not this task (``cancelling()`` is 0), and means "not delivered". Raised from
        here, mode's ``wait_first`` re-raised it and crashed the fetcher, and so the worker.
        """
        try:
            for topic, messages in batches.items():
                await self.batch_channels[topic].send(value=messages)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task is cancelled (the flow was suspended, or shutdown)
            return False
        return True

    async def _deliver(self, batches: dict[str, Fetch]) -> None:
        """Hand the fetch's batches over, unless the flow is suspended (a rebalance) first.

        Records count as delivered — tracked as unacked, their read offsets advanced — only when
        the hand-over completes; otherwise they are fetched again after the rebalance's seek.
        """
        unacked: Any = self._unacked_messages  # Faust's records and our tokens (PendingFetch)
        for fetch in batches.values():
            fetch.pending.size = len(fetch)
            unacked.add(fetch.pending)
        delivery = self._deliver_batches(batches)
        result = await self.wait_first(delivery, self.suspend_flow.wait())
        if delivery not in result.done or not result.results[result.done.index(delivery)]:
            for fetch in batches.values():
                unacked.discard(fetch.pending)
            return
        set_read_offset = self._read_offset.__setitem__
        for fetch in batches.values():
            for tp, offsets in fetch.offsets.items():
                set_read_offset(tp, offsets[-1])

    async def wait_empty(self) -> None:
        """Faust's wait for every delivered record to be acknowledged, bounded by half the
        rebalance timeout (a rebalance waits that long for this member at most anyway).

        Seen in ``evtwin bench pipeline``: a worker stopped during a rebalance waited forever
        for one record of a batch that would never be acknowledged (the revocation had cleared
        it from the agent's queue, and something still referenced it, so it never left Faust's
        weak set). Giving up is safe: offsets are committed only up to the records acknowledged
        without a gap, so an unacknowledged record is read again by whoever owns its partition.
        """
        timeout = float(self.app.conf.broker_rebalance_timeout) / 2
        try:
            await asyncio.wait_for(super().wait_empty(), timeout)
        except TimeoutError:
            left = len(self._unacked_messages)
            log.warning("%d delivered record(s) not acknowledged after %.0f s; not committed, "
                        "so they are read again", left, timeout)
            self._unacked_messages.clear()
            await self.commit_and_end_transactions()

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Any, self)._stopped.is_set
        fetcher_should_stop = cast(Any, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        batch_topics = self.batch_channels
        commit_every = self._commit_every
        message: Any = None
        fetch: Fetch | None = None
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                batches: dict[str, Fetch] = {}
                # The previous offset of each partition within this fetch: batch records are
                # marked delivered only at the end of the fetch, so _read_offset lags inside it.
                previous: dict[Any, int | None] = {}
                async for tp, message in ait:
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # already delivered (Faust drops these too)
                    prev = previous.get(tp, r_offset)
                    previous[tp] = offset
                    if prev and offset - prev > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, prev + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if message.topic in batch_topics:
                        # Faust's track_message, minus its per-record sensor call: the Monitor's
                        # per-event statistics are read by nobody here; our metrics count batches.
                        fetch = batches.get(message.topic)
                        if fetch is None:
                            fetch = batches[message.topic] = Fetch()
                        fetch.add(message)
                        continue
                    await self.wait_first(callback(message), self.suspend_flow.wait())
                    set_read_offset(tp, offset)
                # The loop variable would keep the fetch's last record alive until the next fetch
                # brings one: a record dropped from a queue by a revocation then never leaves
                # Faust's weak set of unacknowledged records, and wait_empty waits on it.
                message = fetch = None
                if batches:
                    await self._deliver(batches)
                    batches = {}
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise


class BatchingTransport(aiokafka_driver.Transport):
    Consumer = BatchingConsumer


class TwinApp(faust.App):
    """A Faust app whose consumer can deliver whole fetches to an agent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_channels: dict[str, Any] = {}

    def _new_transport(self) -> Any:
        return BatchingTransport(self.conf.broker_consumer, self)


def deliver_in_batches(app: TwinApp, topic: Any, maxsize: int = 8) -> Any:
    """Subscribe ``app`` to ``topic`` and return a channel that receives its records as one
    :class:`Fetch` (a list of ``faust.types.Message``) per fetch. Whoever iterates the channel
    must acknowledge it (``app.consumer.ack_fetch(fetch)``) once its work is durable.

    Args:
        app: The app (a :class:`TwinApp`).
        topic: A Faust topic (raw key and value serializers).
        maxsize: Fetches buffered before the consumer waits (backpressure).
    """
    channel = app.channel(maxsize=maxsize)
    for name in topic.topics:
        app.batch_channels[name] = channel
    app.topics.add(topic)
    return channel


__all__ = ["BatchingConsumer", "BatchingTransport", "Fetch", "PacedConsumerThread", "PendingFetch", "TwinApp",
           "deliver_in_batches", "pace_fetches"]
