"""Keep the garbage collector's full collections short in a long-running server.

CPython's full (generation-2) collection walks every tracked object. The API holds ~85,000 objects
after start-up (modules, FastAPI's and pydantic's schemas, the clients) that never die; under load,
short-lived objects promoted into generation 2 (a request alive across a few young collections)
trigger full collections every few hundred ms, and each walked them all: 31 full collections in
20 s of ``GET /api/batteries/{id}`` load took up to 65 ms each, every other request stopped
meanwhile — they were the twin's p99 (``evtwin bench api``: p99 62–75 ms → 20–25 ms, and
3,900 → 5,300 requests/s, with :func:`freeze_startup_heap` called at the end of the start-up).

Tried on the score worker too (155,000 objects after the model loads, a full collection ~90 ms):
four alternating ``evtwin bench pipeline`` runs showed no difference beyond the machine's drift,
so only the API does it.

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
