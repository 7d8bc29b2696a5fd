"""``evtwin bench e2e`` starts a pipeline process that exits while the consumer groups join again,
as ``evtwin up``'s supervisor would (noida-db now and then answers a join with a SyncGroup that
aiokafka cannot decode, and the process exits on purpose), a bounded number of times; then it
fails with the process's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import BenchError
from streams.tools import bench_e2e


def test_a_process_that_exits_while_joining_is_started_again_then_given_up(tmp_path: Path) -> None:
    # A real `evtwin` process that exits at once (status 2: an unknown option).
    proc = bench_e2e._start("worker-0", ["--no-such-option"], {}, tmp_path)
    procs = [proc]
    proc.wait(60)
    restarts: dict[str, int] = {}
    said: list[str] = []
    for n in range(1, bench_e2e.JOIN_RESTARTS + 1):
        bench_e2e._restart_exited(procs, tmp_path, restarts, None, {}, said.append)  # type: ignore[arg-type]
        assert procs[0] is not proc and restarts == {"worker-0": n}  # a new process in its place
        proc = procs[0]
        proc.wait(60)
    assert len(said) == bench_e2e.JOIN_RESTARTS and "starting it again" in said[0]
    with pytest.raises(BenchError, match="worker-0 exited with status 2"):
        bench_e2e._restart_exited(procs, tmp_path, restarts, None, {}, said.append)  # type: ignore[arg-type]
    log = (tmp_path / "worker-0.log").read_text()
    assert log.count("usage: evtwin") == bench_e2e.JOIN_RESTARTS + 1  # every run's stderr is kept
