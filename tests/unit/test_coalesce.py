"""The data-loader that lets concurrent twin requests share queries: what each caller gets, how
lookups group under load, and what an error or a cancelled caller does to the others."""

from __future__ import annotations

import asyncio

import pytest

from streams.api.coalesce import Coalescer


class Table:
    """A fake query over a dict that records every batch it was asked and can be held open."""

    def __init__(self, rows: dict[str, int]) -> None:
        self.rows = rows
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def fetch(self, keys: list[str]) -> dict[str, int]:
        self.batches.append(list(keys))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {k: self.rows[k] for k in keys if k in self.rows}


def test_one_lookup_alone_goes_at_once_and_missing_keys_are_none() -> None:
    async def run() -> None:
        table = Table({"a": 1})
        loader = Coalescer(table.fetch)
        assert await loader.get("a") == 1
        assert await loader.get("zz") is None
        assert table.batches == [["a"], ["zz"]]

    asyncio.run(run())


def test_concurrent_lookups_share_queries_and_each_caller_gets_its_own_row() -> None:
    async def run() -> None:
        table = Table({f"k{i}": i for i in range(100)})
        loader = Coalescer(table.fetch, max_batch=16, max_inflight=2)
        keys = [f"k{i % 40}" for i in range(120)] + ["missing"]
        got = await asyncio.gather(*(loader.get(k) for k in keys))
        assert got == [int(k[1:]) if k != "missing" else None for k in keys]
        assert all(len(b) <= 16 for b in table.batches)
        assert all(len(set(b)) == len(b) for b in table.batches)  # a key once per query
        assert len(table.batches) < len(keys) / 4
        assert loader.batches == len(table.batches) and loader.lookups == len(keys)

    asyncio.run(run())


def test_lookups_wait_while_the_inflight_queries_run_then_go_together() -> None:
    async def run() -> None:
        table = Table({f"k{i}": i for i in range(10)})
        table.gate.clear()
        loader = Coalescer(table.fetch, max_inflight=1)
        first = asyncio.ensure_future(loader.get("k0"))
        await asyncio.sleep(0.01)
        assert table.batches == [["k0"]]  # in flight, held
        rest = [asyncio.ensure_future(loader.get(f"k{i}")) for i in range(1, 10)]
        await asyncio.sleep(0.01)
        assert len(table.batches) == 1  # nothing else is sent while the one allowed query runs
        table.gate.set()
        assert await first == 0 and await asyncio.gather(*rest) == list(range(1, 10))
        assert table.batches == [["k0"], [f"k{i}" for i in range(1, 10)]]

    asyncio.run(run())


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_runs() -> None:
    async def run() -> None:
        table = Table({"a": 1, "b": 2})
        loader = Coalescer(table.fetch)
        table.fail = RuntimeError("database went away")
        results = await asyncio.gather(loader.get("a"), loader.get("b"), return_exceptions=True)
        assert [str(r) for r in results] == ["database went away"] * 2
        table.fail = None
        assert await asyncio.gather(loader.get("a"), loader.get("b")) == [1, 2]

    asyncio.run(run())


def test_a_cancelled_caller_does_not_cancel_another_waiting_for_the_same_key() -> None:
    async def run() -> None:
        table = Table({"a": 1})
        table.gate.clear()
        loader = Coalescer(table.fetch)
        gone = asyncio.ensure_future(loader.get("a"))
        stays = asyncio.ensure_future(loader.get("a"))
        await asyncio.sleep(0.01)
        gone.cancel()
        table.gate.set()
        assert await stays == 1
        with pytest.raises(asyncio.CancelledError):
            await gone

    asyncio.run(run())


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Table({}).fetch, max_batch=0)

