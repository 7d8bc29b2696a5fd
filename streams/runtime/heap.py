"""Keep the garbage collector's full collections short in long-running processes.

CPython's full (generation-2) collection walks every tracked object. A stream app or the API
holds ~85,000 objects after start-up (modules, FastAPI's and pydantic's schemas, the model) that
never die; under load, short-lived objects promoted into generation 2 (a request or a batch alive
across a few young collections) trigger full collections every few hundred ms, and each walked
them all: in the API, 31 full collections in 20 s of load took up to 65 ms each, all other requests
stopped meanwhile — the p99 of ``GET /api/batteries/{id}`` was those pauses (``evtwin bench api``).

:func:`freeze_startup_heap` collects once and moves what survives to the permanent generation
(:func:`gc.freeze`), which full collections skip: a full collection then walks only what was
created since. The frozen objects are still freed by reference counting; only cycles among them
would stay, which is the price CPython documents for this (and start-up objects rarely die).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect, then freeze what is left (call once start-up is done); return the frozen count."""
    gc.collect()
    gc.freeze()
    count = gc.get_freeze_count()
    log.debug("froze %d start-up objects out of the collector's full collections", count)
    return count


__all__ = ["freeze_startup_heap"]
