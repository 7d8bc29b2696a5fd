"""A score worker started on a Kafka listener with the given environment, checked to score every
event the simulator sends (the security tests: TLS, SASL/SCRAM)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from tests.support.cli import EVTWIN
from tests.support.paths import REPO
from tests.support.simulate import simulate
from tests.support.topic_reader import prediction_ids


def assert_worker_scores_everything(bootstrap: str, env: dict[str, str], state_dir: Path, prefix: str) -> None:
    """Run ``evtwin worker`` with ``env``, send 400 readings of 20 packs named ``prefix…`` (with the
    process's Kafka security), and assert that each has its prediction within 120 s."""
    log = open(state_dir / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(EVTWIN + ["worker"], env=env, cwd=REPO, stdout=log, stderr=log)
    try:
        ids = simulate(bootstrap, f"{prefix}{uuid.uuid4().hex[:5]}_", 20, 400, seed=5)
        scored = prediction_ids(bootstrap, set(ids), timeout=120)
        assert worker.poll() is None, (state_dir / "worker.log").read_text()[-3000:]
        assert scored == set(ids), f"{len(scored)} of {len(ids)} scored; " + \
            (state_dir / "worker.log").read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
