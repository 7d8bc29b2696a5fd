"""Running ``evtwin`` as a subprocess, the way a user does, with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

EVTWIN = [sys.executable, "-m", "streams.cli"]


def cli_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for an ``evtwin`` subprocess: no EVTWIN_* from the caller, our state dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVTWIN_")}
    env["EVTWIN_STATE_DIR"] = str(state_dir)
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``evtwin ARGS`` as a subprocess and return its result."""
    return subprocess.run(EVTWIN + args, input=stdin, capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)
