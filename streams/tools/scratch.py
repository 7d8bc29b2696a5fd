"""Scratch state directories of the benchmarks: each run starts its own embedded stack in one
(the broker's log, PostgreSQL's data — 2-3 GB after a 10 M-row API bench), removed when the run
ends well and kept, with its path on stderr, when it fails (the processes' logs are in it)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_state(prefix: str) -> Iterator[Path]:
    """A new directory (mode 755: the embedded PostgreSQL runs as another user) for one run."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    state.chmod(0o755)
    try:
        yield state
    except BaseException:
        print(f"kept for its logs: {state}", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(state, ignore_errors=True)


__all__ = ["scratch_state"]
