"""The Faust batching override (streams/runtime/batching.py) leans on Faust's private consumer
internals, so Faust is pinned exactly and these tests fail when the installed Faust is not the
version the override was written against — or when the delivery semantics break: a fetch handed
over counts as delivered (unacked, read offsets advanced); a fetch cut off by a rebalance does not."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import re
import time
import tomllib
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

from faust.transport.consumer import Consumer
from mode.utils.logging import CompositeLogger

from streams.runtime.batching import (
    BatchingConsumer,
    Fetch,
    crash_when_coordination_dies,
    pace_fetches,
)

REPO = Path(__file__).resolve().parents[2]

# sha256 (first 16 hex) of the Faust methods the override replaces or copies, as of the pin.
UPSTREAM = {"_drain_messages": "44a2500309e83c63"}


def test_faust_is_the_pinned_version_the_override_was_written_against() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("faust-streaming"))
    match = re.fullmatch(r"faust-streaming==([\w.]+)", pin)
    assert match, f"faust-streaming must be pinned exactly (==), not {pin!r}"
    assert version("faust-streaming") == match.group(1)


def test_the_upstream_delivery_loop_is_the_one_the_override_copies() -> None:
    for name, digest in UPSTREAM.items():
        source = inspect.getsource(getattr(Consumer, name))
        assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest, (
            f"faust's Consumer.{name} changed: re-read streams/runtime/batching.py against it, "
            "then update UPSTREAM here")
    module = inspect.getsource(inspect.getmodule(Consumer))  # type: ignore[arg-type]
    for attr in ("_unacked_messages", "_read_offset", "_commit_every", "_n_acked"):
        assert re.search(rf"self\.{attr}\s*[:=]", module), f"faust no longer sets Consumer.{attr}"


class Msg(NamedTuple):
    tp: str
    offset: int
    topic: str = "t"


class Channel:
    def __init__(self, block: bool = False) -> None:
        self.sent: list[Any] = []
        self.block = block

    async def send(self, value: Any) -> None:
        if self.block:
            await asyncio.Event().wait()  # a full channel that never drains
        self.sent.append(value)


def _consumer(channel: Any) -> Any:
    consumer: Any = object.__new__(BatchingConsumer)  # no app, no broker: just the hand-over
    consumer.app = SimpleNamespace(batch_channels={"t": channel})
    consumer._unacked_messages = set()
    consumer._read_offset = {}
    consumer.suspend_flow = asyncio.Event()
    # mode's own Service.wait_first runs (it re-raises what a finished future raised): these
    # are the attributes it reads.
    consumer._loop = None
    consumer._stopped, consumer._crashed = asyncio.Event(), asyncio.Event()
    return consumer


class QueueChannel:
    """A Faust channel's hand-over: ``send`` puts on a mode ThrowableQueue (what an agent's
    channel queue is), which Faust clears when partitions are revoked."""

    def __init__(self, maxsize: int) -> None:
        from mode.utils.queues import FlowControlEvent, ThrowableQueue

        self.flow_control = FlowControlEvent(initially_suspended=False)
        self.queue: Any = ThrowableQueue(maxsize=maxsize, flow_control=self.flow_control,
                                          clear_on_resume=True)  # as Faust's channels make it

    async def send(self, value: Any) -> None:
        await self.queue.put(value)


def _fetch(*messages: Msg) -> Fetch:
    fetch = Fetch()
    for m in messages:
        fetch.add(m)
    return fetch


def test_a_fetch_handed_over_is_one_list_and_counts_as_delivered() -> None:
    channel = Channel()
    consumer = _consumer(channel)
    fetch = _fetch(Msg("t-0", 5), Msg("t-0", 6), Msg("t-1", 9))
    asyncio.run(consumer._deliver({"t": fetch}))
    assert channel.sent == [fetch]  # one event for the whole fetch
    assert list(channel.sent[0]) == [Msg("t-0", 5), Msg("t-0", 6), Msg("t-1", 9)]
    assert consumer._unacked_messages == {fetch.pending}  # acked only by the agent, after its work
    assert fetch.pending.size == 3 and not fetch.pending.acked
    assert consumer._read_offset == {"t-0": 6, "t-1": 9}


def _acking_consumer(committed: dict[str, int | None]) -> Any:
    from collections import defaultdict
    from weakref import WeakSet

    from intervaltree import IntervalTree

    consumer: Any = object.__new__(BatchingConsumer)
    consumer.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    consumer._unacked_messages = WeakSet()
    consumer._committed_offset = defaultdict(lambda: None, committed)
    consumer._acked, consumer._acked_index = defaultdict(list), defaultdict(set)
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    consumer._gap = defaultdict(IntervalTree)
    return consumer


def test_acknowledging_a_fetch_acks_each_of_its_offsets_once_and_only_above_the_commit() -> None:
    """What Faust's per-record ack would leave, per partition: the offsets a commit may take."""
    consumer = _acking_consumer({"t-1": 9})  # t-1 committed up to 9 (a redelivery below it)
    fetch = _fetch(Msg("t-0", 5), Msg("t-1", 8), Msg("t-0", 6), Msg("t-1", 9), Msg("t-1", 10))
    consumer._unacked_messages.add(fetch.pending)
    consumer.ack_fetch(fetch)
    assert dict(consumer._acked) == {"t-0": [5, 6], "t-1": [9, 10]}
    assert consumer._n_acked == 4
    assert len(consumer._unacked_messages) == 0 and fetch.pending.acked
    consumer.ack_fetch(fetch)  # again: nothing changes
    assert dict(consumer._acked) == {"t-0": [5, 6], "t-1": [9, 10]} and consumer._n_acked == 4
    again = _fetch(Msg("t-0", 6), Msg("t-0", 7))  # a redelivered record is acked once
    consumer.ack_fetch(again)
    assert consumer._acked["t-0"] == [5, 6, 7] and consumer._n_acked == 5
    assert consumer._new_offset("t-0") == 8  # Faust's own commit arithmetic agrees


def test_a_fetch_nobody_references_leaves_the_unacknowledged_set() -> None:
    """As a record did: a revocation clears the agent's queue, and Faust must not wait on it."""
    import gc

    consumer = _acking_consumer({})
    fetch = _fetch(Msg("t-0", 1))
    consumer._unacked_messages.add(fetch.pending)
    assert len(consumer._unacked_messages) == 1
    del fetch
    gc.collect()
    assert len(consumer._unacked_messages) == 0


def test_a_fetch_cut_off_by_a_rebalance_is_not_delivered() -> None:
    channel = Channel(block=True)
    consumer = _consumer(channel)

    async def run() -> None:
        delivery = asyncio.ensure_future(consumer._deliver({"t": _fetch(Msg("t-0", 5))}))
        await asyncio.sleep(0.01)
        consumer.suspend_flow.set()  # a rebalance starts while the channel is full
        await asyncio.wait_for(delivery, 2)

    asyncio.run(run())
    assert channel.sent == []
    assert consumer._unacked_messages == set()  # fetched again after the rebalance's seek
    assert consumer._read_offset == {}


def test_aiokafka_still_fetches_through_the_method_the_pacing_wraps() -> None:
    from aiokafka.consumer.fetcher import Fetcher

    params = list(inspect.signature(Fetcher._proc_fetch_request).parameters)
    assert params == ["self", "assignment", "node_id", "request"], params
    assert "self._proc_fetch_request(" in inspect.getsource(Fetcher._fetch_requests_routine)


def _fetcher(answers: list[bool]) -> Any:
    calls: list[float] = []

    async def proc(assignment: Any, node_id: int, request: Any) -> bool:
        calls.append(time.monotonic())
        return answers.pop(0)

    fetcher = SimpleNamespace(_proc_fetch_request=proc, calls=calls)
    pace_fetches(fetcher, pause_s=0.05)
    return fetcher


def test_every_fetch_is_paced_from_when_it_was_sent() -> None:
    """noida-db answers at once, empty or not: each fetch waits out the pause (records that
    arrive meanwhile come with the next one); a fetch that itself took the pause is not delayed."""
    fetcher = _fetcher([False, True])

    async def run() -> tuple[bool, float, bool, float]:
        t0 = time.monotonic()
        empty = await fetcher._proc_fetch_request(None, 0, None)
        t1 = time.monotonic()
        full = await fetcher._proc_fetch_request(None, 0, None)
        return empty, t1 - t0, full, time.monotonic() - t1

    empty, empty_s, full, full_s = asyncio.run(run())
    assert (empty, full) == (False, True)
    assert empty_s >= 0.045 and full_s >= 0.045  # the broker answered at once; the fetch waits
    assert empty_s < 0.5 and full_s < 0.5


def test_a_fetch_slower_than_the_pause_is_not_delayed_further() -> None:
    async def proc(assignment: Any, node_id: int, request: Any) -> bool:
        await asyncio.sleep(0.2)  # a broker that long-polls
        return True

    fetcher = SimpleNamespace(_proc_fetch_request=proc)
    pace_fetches(fetcher, pause_s=0.05)

    async def run() -> float:
        t0 = time.monotonic()
        assert await fetcher._proc_fetch_request(None, 0, None) is True
        return time.monotonic() - t0

    took = asyncio.run(run())
    assert 0.19 <= took < 0.24, took


def test_a_pause_cancelled_by_close_returns_no_records_instead_of_raising() -> None:
    fetcher = _fetcher([False])

    async def run() -> Any:
        task = asyncio.ensure_future(fetcher._proc_fetch_request(None, 0, None))
        await asyncio.sleep(0.01)
        task.cancel()
        return await asyncio.wait_for(task, 1)

    assert asyncio.run(run()) is False


def test_a_fetch_whose_channel_is_cleared_by_a_rebalance_is_not_delivered_and_nothing_crashes() -> None:
    """Faust clears the agent's full queue on a revocation, which cancels the waiting put: the
    fetcher used to crash on that CancelledError (and the worker with it, seen under load)."""

    async def run() -> tuple[Any, Any]:
        channel = QueueChannel(maxsize=1)
        await channel.queue.put(["an earlier fetch the agent has not taken yet"])
        consumer = _consumer(channel)
        delivery = asyncio.ensure_future(consumer._deliver({"t": _fetch(Msg("t-0", 5))}))
        await asyncio.sleep(0.01)
        assert not delivery.done()  # waiting for room on the full queue
        # What Faust's app does on a revocation, in one go: stop the consumer's flow, suspend and
        # clear the queues (the waiting put is cancelled).
        consumer.suspend_flow.set()
        channel.flow_control.suspend()
        channel.flow_control.clear()
        await asyncio.wait_for(delivery, 2)  # returns, does not raise CancelledError
        return consumer, channel

    consumer, channel = asyncio.run(run())
    assert channel.queue.empty()
    assert consumer._unacked_messages == set()  # fetched again after the rebalance's seek
    assert consumer._read_offset == {}


def test_a_delivery_cancelled_from_outside_still_raises() -> None:
    """Only the put's cancellation means "not delivered": a cancelled fetcher (shutdown) stops."""

    async def run() -> None:
        channel = QueueChannel(maxsize=1)
        await channel.queue.put(["full"])
        consumer = _consumer(channel)
        delivery = asyncio.ensure_future(consumer._deliver({"t": _fetch(Msg("t-0", 5))}))
        await asyncio.sleep(0.01)
        delivery.cancel()
        try:
            await delivery
        except asyncio.CancelledError:
            return
        raise AssertionError("the cancellation of the fetcher was swallowed")

    asyncio.run(run())


def test_waiting_for_acknowledgements_is_bounded_and_commits_only_what_was_acknowledged() -> None:
    """Faust's own wait_empty loop runs (its commits recorded): a delivered record that will never
    be acknowledged (dropped from a queue on a revocation, still referenced) used to hold a
    stopping worker forever; now the wait ends after half the rebalance timeout and the commit
    that follows leaves the record uncommitted (Faust commits acknowledged offsets only)."""

    class Stuck:  # a delivered record nobody will acknowledge
        acked = False
        refcount = 0

    async def run() -> tuple[Any, float, list[str]]:
        consumer: Any = object.__new__(BatchingConsumer)
        consumer.app = SimpleNamespace(conf=SimpleNamespace(broker_rebalance_timeout=0.6),
                                       agents=SimpleNamespace(human_tracebacks=lambda: ""))
        consumer._loop = None
        consumer._stopped, consumer._crashed = asyncio.Event(), asyncio.Event()
        consumer.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        consumer.log = CompositeLogger(logging.getLogger("test.consumer"))
        stuck = Stuck()
        consumer._unacked_messages = {stuck}
        calls: list[str] = []

        async def commit(*args: Any, **kwargs: Any) -> bool:
            calls.append("commit")
            return False

        async def commit_and_end_transactions() -> None:
            calls.append("final commit")

        async def wait_for_ack(timeout: float) -> None:
            await asyncio.sleep(min(timeout, 0.05))

        consumer.commit, consumer.commit_and_end_transactions = commit, commit_and_end_transactions
        consumer._wait_for_ack = wait_for_ack
        started = time.monotonic()
        await asyncio.wait_for(consumer.wait_empty(), 5)
        return consumer, time.monotonic() - started, calls

    consumer, took, calls = asyncio.run(run())
    assert 0.25 <= took < 2.0  # half of the 0.6 s rebalance timeout, not forever
    assert consumer._unacked_messages == set()
    assert calls[0] == "commit" and calls[-1] == "final commit"


class _Service:
    """What crash_when_coordination_dies needs of mode's service: should_stop and crash()."""

    def __init__(self, stopping: bool = False) -> None:
        self.should_stop = stopping
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


def _coordination(outcome: str, service: _Service) -> None:
    async def routine() -> None:  # as aiokafka's _coordination_routine ends
        await asyncio.sleep(0.01)
        if outcome == "error":
            raise RuntimeError("Unexpected error during coordination: struct.error")
        await asyncio.sleep(10)

    async def run() -> None:
        task = asyncio.ensure_future(routine())
        crash_when_coordination_dies(task, service)
        await asyncio.sleep(0.05)
        if outcome == "cancelled":  # the consumer stopped
            task.cancel()
        await asyncio.sleep(0.05)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.01)

    asyncio.run(run())


def test_a_consumer_whose_group_coordination_died_crashes_its_service() -> None:
    service = _Service()
    _coordination("error", service)
    assert [str(e) for e in service.crashed] == ["Unexpected error during coordination: struct.error"]


def test_a_stopped_or_stopping_consumer_does_not_crash() -> None:
    for outcome, stopping in (("cancelled", False), ("error", True)):
        service = _Service(stopping)
        _coordination(outcome, service)
        assert service.crashed == [], (outcome, stopping)
