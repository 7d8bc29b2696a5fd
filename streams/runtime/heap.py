"""Keep the garbage collector's full collections short in long-running processes.

CPython's full (generation-2) collection walks every tracked object. Once a process is up, its
heap is mostly objects that live as long as it does: modules, Faust, aiokafka and the model in a
stream app (~155,000 objects); FastAPI's and pydantic's schemas and the clients in the API
(~85,000). Under load, short-lived objects promoted into generation 2 (a batch or a request alive
across a few young collections) trigger full collections every few hundred ms, and each walked
them all, stalling the event loop and everything in flight:

- score worker: 130–250 ms per full collection on a 2×-slowed machine, once every few seconds —
  that was its p99 latency; after :func:`freeze_heap`, 2–8 ms;
- API: 31 full collections in 20 s of ``GET /api/batteries/{id}`` load, up to 65 ms each — the
  twin's p99 (the HTTP load of ``evtwin bench api`` against a held 1 M-row stack: p99 62–75 ms →
  20–25 ms, 3,900 → 4,800–5,400 requests/s).

:func:`freeze_heap` collects once and moves what survives to the permanent generation
(:func:`gc.freeze`), which full collections skip: a full collection then walks only what was
created since. The frozen objects are still freed by reference counting; only cycles among them
would stay, which is the price CPython documents for this (and start-up objects rarely die).
Stream apps call it after their first fetch (:mod:`streams.runtime.agent`), the API at the end of
its start-up (:mod:`streams.api.app`).
"""

from __future__ import annotations

import gc


def freeze_heap() -> int:
    """Collect, then freeze what is left (call once start-up is done); return the frozen count."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


__all__ = ["freeze_heap"]
