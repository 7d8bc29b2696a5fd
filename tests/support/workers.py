"""``evtwin worker`` subprocesses for the end-to-end tests (the ``workers`` fixture wraps them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from connectors.embedded.process import stop_processes
from streams.settings import Settings
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO


class Workers:
    """``evtwin worker`` subprocesses against the session stack (killed at teardown)."""

    def __init__(self, settings: Settings, model_dir: Path, app_id: str, **env: str) -> None:
        self.settings, self.model_dir, self.app_id, self.extra = settings, model_dir, app_id, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1, **env: str) -> list[subprocess.Popen[bytes]]:
        new = []
        for _ in range(n):
            values = {"EVTWIN_MODEL_DIR": str(self.model_dir), "EVTWIN_APP_ID": self.app_id,
                      "EVTWIN_METRICS_PORT": "0", **self.extra, **env}
            e = cli_env(self.settings.state_dir, **values)
            log = open(self.settings.state_dir / f"{self.app_id}-{len(self.procs)}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(EVTWIN + ["worker"], env=e, cwd=REPO, stdout=log, stderr=log)
            self.procs.append(proc)
            new.append(proc)
        return new

    def logs(self) -> str:
        """The tail of every worker's log (shown when a test fails)."""
        out = []
        for i in range(len(self.procs)):
            path = self.settings.state_dir / f"{self.app_id}-{i}.log"
            keep = ("partition", "assign", "revok", "rebalanc", "Seek", "Resuming", "generation")
            lines = [ln for ln in path.read_text(errors="replace").splitlines()
                     if ("[INFO]" not in ln and " INFO " not in ln) or any(k in ln for k in keep)]
            out.append(f"--- worker {i} ---\n" + "\n".join(lines[-30:]))
        return "\n".join(out)

    def stop(self) -> None:
        print(self.logs(), file=sys.stderr)
        stop_processes(self.procs)
