"""Start-up objects leave the collector's full collections once a process is up."""

from __future__ import annotations

import gc

from streams.runtime.heap import freeze_heap


def test_freezing_the_startup_heap_takes_live_objects_out_of_full_collections() -> None:
    kept = [[i] for i in range(10_000)]  # noqa: F841 (alive while frozen)
    try:
        assert freeze_heap() >= 10_000
        assert gc.get_freeze_count() >= 10_000
    finally:
        gc.unfreeze()
