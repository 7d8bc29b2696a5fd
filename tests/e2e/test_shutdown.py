"""``evtwin services`` / ``up`` leave no process behind: after Ctrl-C, SIGTERM, or their own death."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _start(command: str, state_dir: Path, model_dir: Path | None = None) -> tuple[subprocess.Popen[bytes], dict]:
    env = cli_env(state_dir, EVTWIN_EMBEDDED_KAFKA_PORT="0", EVTWIN_EMBEDDED_POSTGRES_PORT="0",
                  EVTWIN_EMBEDDED_MQTT_PORT="0", EVTWIN_METRICS_PORT="0",
                  EVTWIN_MODEL_DIR=str(model_dir or state_dir / "models"))
    proc = subprocess.Popen(EVTWIN + [command], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stack_file = state_dir / "stack.json"
    deadline = time.monotonic() + 60
    while not stack_file.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "stack did not start in 60 s"
        time.sleep(0.1)
    data = json.loads(stack_file.read_text())
    assert data["pid"] == proc.pid
    return proc, data


def _service_pids(data: dict) -> list[int]:
    pids = [s["pid"] for s in data["services"].values()]
    assert len(pids) == 3 and all(_alive(p) for p in pids)
    return pids


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions ``text`` (our state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if text in cmdline and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _describe(pid: int) -> str:
    """``pid (state) command line``: what a process left behind is, for the failure message."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} ({state}) {cmdline.strip()}"


def _pipeline_missing(state_dir: Path) -> set[str]:
    """The pipeline commands of ``evtwin up`` that have no process yet."""
    wanted = {"ingest", "worker", "sink", "mqtt-bridge", "simulate"}
    for pid in _processes_mentioning(str(state_dir)):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        wanted -= set(args)
    return wanted


def _wait_all_gone(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        left = [_describe(p) for p in pids if _alive(p)]
        assert time.monotonic() < deadline, f"still running after {timeout:.0f} s: {left}"
        time.sleep(0.1)


@pytest.mark.parametrize(("command", "sig"), [("services", signal.SIGINT), ("up", signal.SIGTERM)])
def test_signal_stops_everything(state_dir: Path, trained_model: Path, command: str, sig: int) -> None:
    proc, data = _start(command, state_dir, trained_model)
    pids = _service_pids(data)
    if command == "up":  # the pipeline's processes run too: ingest, worker, sink, bridge, simulator
        deadline = time.monotonic() + 60
        while missing := _pipeline_missing(state_dir):
            assert time.monotonic() < deadline, f"pipeline processes did not start: {missing}"
            time.sleep(0.2)
    proc.send_signal(sig)
    assert proc.wait(60) == 0
    _wait_all_gone(pids)
    _wait_all_gone(_processes_mentioning(str(state_dir)))
    assert not (state_dir / "stack.json").exists()


def test_a_second_ctrl_c_during_the_shutdown_changes_nothing(state_dir: Path, trained_model: Path) -> None:
    """Ctrl-C twice (or ``timeout`` forwarding the SIGINT pkill sent it too): one clean shutdown,
    no traceback (the second signal used to raise inside subprocess's bookkeeping)."""
    proc, data = _start("up", state_dir, trained_model)
    pids = _service_pids(data)
    deadline = time.monotonic() + 60
    while missing := _pipeline_missing(state_dir):
        assert time.monotonic() < deadline, f"pipeline processes did not start: {missing}"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)  # the shutdown is under way: stopping the pipeline's processes
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    text = err.decode(errors="replace")
    # 0, or killed by the second SIGINT when it lands after the shutdown, as the interpreter
    # exits (it restores the default handlers then): the work was done either way.
    assert proc.returncode in (0, -signal.SIGINT), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    _wait_all_gone(pids)
    _wait_all_gone(_processes_mentioning(str(state_dir)))
    assert not (state_dir / "stack.json").exists()


@pytest.mark.parametrize("command", ["services", "up"])
def test_parent_killed_takes_its_processes_along(state_dir: Path, trained_model: Path, command: str) -> None:
    proc, data = _start(command, state_dir, trained_model)
    pids = _service_pids(data)
    if command == "up":
        deadline = time.monotonic() + 60
        while missing := _pipeline_missing(state_dir):
            assert time.monotonic() < deadline, f"pipeline processes did not start: {missing}"
            time.sleep(0.2)
    proc.kill()  # SIGKILL: no chance to clean up; the kernel signals the children
    proc.wait(10)
    _wait_all_gone(pids)
    _wait_all_gone(_processes_mentioning(str(state_dir)))


_STUCK_CHILD = """
import os, signal, sys, time
from connectors.embedded.process import exit_when_orphaned
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a clean shutdown that never finishes
exit_when_orphaned(grace_s=0.5)
print("ready", flush=True)
time.sleep(120)
"""

_SUPERVISOR = """
import subprocess, sys
from connectors.embedded.process import ManagedProcess
from pathlib import Path
child = ManagedProcess("stuck", [sys.executable, "-c", sys.argv[1]], Path(sys.argv[2]))
child.start()
print(child.pid, flush=True)
sys.stdin.readline()  # exit (without stopping the child) when the test says so
"""


def test_orphan_whose_shutdown_hangs_exits_anyway(tmp_path: Path) -> None:
    """A child of ``evtwin up`` that ignores the parent-death signal still goes, after its grace."""
    log = tmp_path / "stuck.log"
    sup = subprocess.Popen([sys.executable, "-c", _SUPERVISOR, _STUCK_CHILD, str(log)], cwd=REPO,
                           env=cli_env(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert sup.stdout is not None and sup.stdin is not None
    child = int(sup.stdout.readline())
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    sup.stdin.close()
    assert sup.wait(10) == 0
    _wait_all_gone([child], timeout=15)
