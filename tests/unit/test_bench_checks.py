"""A benchmark whose worker dies says so at once, with the end of the worker's log, instead of
waiting its whole timeout for output that cannot come."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.errors import BenchError
from streams.tools.bench_pipeline import check_workers


def test_a_worker_that_exited_stops_the_bench_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; print('model mismatch: retrain', "
                             "file=sys.stderr); sys.exit(3)"], stderr=log.open("wb"))
    proc.log_path = log  # type: ignore[attr-defined]
    proc.wait(30)
    with pytest.raises(BenchError, match=r"status 3 .*model mismatch: retrain"):
        check_workers([proc])


def test_running_workers_pass(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        check_workers([proc])
    finally:
        proc.kill()
        proc.wait()
