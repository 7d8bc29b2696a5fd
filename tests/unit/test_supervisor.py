"""Supervision of child processes: the log lines a failure quotes, the backoff, and the
supervisor's decisions (start-up failure, restart, giving up) on tiny real child processes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from connectors.embedded.process import (
    RUN_MARKER,
    ManagedProcess,
    RestartPolicy,
    SupervisionError,
    Supervisor,
    describe_exit,
    log_excerpt,
    stop_all,
)

_FAUST_INFO = "[2026-12-03 01:21:36,190] [20529] [INFO] Timer commit woke up too late, with a drift of +0.56"


def _log(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.log"
    path.write_text(text)
    return path


def test_excerpt_is_the_traceback_and_error_lines_not_the_last_line(tmp_path: Path) -> None:
    path = _log(tmp_path, "\n".join([
        "01:00:00 INFO    streams.scoring.worker: score worker evtwin-score",
        "01:00:01 ERROR   streams.scoring.worker: cannot load the model",
        "Traceback (most recent call last):",
        '  File "worker.py", line 3, in run',
        "    load()",
        "OSError: [Errno 98] Address already in use",
        _FAUST_INFO,
        "",
    ]))
    assert log_excerpt(path) == [
        "01:00:01 ERROR   streams.scoring.worker: cannot load the model",
        "Traceback (most recent call last):",
        '  File "worker.py", line 3, in run',
        "    load()",
        "OSError: [Errno 98] Address already in use",
    ]


def test_excerpt_reads_faust_and_json_levels_and_only_the_last_run(tmp_path: Path) -> None:
    path = _log(tmp_path, "\n".join([
        "01:00:01 ERROR   old run: not this one",
        f"{RUN_MARKER}2026-12-03T01:00:00+00:00 starting worker; restart 1 ===",
        "[2026-12-03 01:21:36,190] [20529] [ERROR] [^Worker]: Error: KafkaError",
        '{"level": "CRITICAL", "message": "gave up"}',
        '{"level": "INFO", "message": "ERRORS are fine in messages"}',
        _FAUST_INFO,
    ]))
    assert log_excerpt(path) == [
        "[2026-12-03 01:21:36,190] [20529] [ERROR] [^Worker]: Error: KafkaError",
        '{"level": "CRITICAL", "message": "gave up"}',
    ]


def test_excerpt_falls_back_to_the_last_lines_and_shortens_a_long_traceback(tmp_path: Path) -> None:
    plain = _log(tmp_path, "\n".join(f"line {i}" for i in range(20)))
    assert log_excerpt(plain) == [f"line {i}" for i in range(15, 20)]
    assert log_excerpt(plain, fallback=False) == []
    frames = [f'  File "f{i}.py", line {i}, in f' for i in range(30)]
    long_tb = _log(tmp_path, "\n".join(["Traceback (most recent call last):", *frames, "ValueError: deep"]))
    assert log_excerpt(long_tb, max_lines=6) == [
        "Traceback (most recent call last):", "  …", *frames[-3:], "ValueError: deep"]
    assert log_excerpt(tmp_path / "missing.log") == []


def test_exit_descriptions_and_backoff() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(-9) == "killed by signal 9 (SIGKILL)"
    policy = RestartPolicy(backoff_s=1.0, backoff_max_s=5.0)
    assert [policy.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def _child(tmp_path: Path, code: str, name: str = "tiny") -> ManagedProcess:
    return ManagedProcess(name, [sys.executable, "-c", code], tmp_path / f"{name}.log")


def _poll_until_raises(sup: Supervisor, timeout: float) -> SupervisionError:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sup.poll()
        except SupervisionError as exc:
            return exc
        time.sleep(0.02)
    raise AssertionError(f"the supervisor did not give up in {timeout} s")


def test_exit_during_start_up_is_reported_with_status_and_log(tmp_path: Path) -> None:
    proc = _child(tmp_path, "import sys; print('INFO starting'); print('ERROR bad config', flush=True); sys.exit(3)")
    proc.start()
    sup = Supervisor([proc], RestartPolicy(startup_s=30.0))
    message = str(_poll_until_raises(sup, 10))
    assert message.startswith("tiny exited during start-up (exit code 3,")
    assert "ERROR bad config" in message and "INFO starting" not in message
    assert sup.restarts() == {"tiny": 0}


def test_exit_after_start_up_restarts_with_backoff_then_gives_up(tmp_path: Path) -> None:
    proc = _child(tmp_path, "import time, sys; time.sleep(0.4); sys.exit(2)")
    reports: list[str] = []
    restarted: list[str] = []
    sup = Supervisor([proc], RestartPolicy(startup_s=0.2, backoff_s=0.1, max_restarts=2),
                     report=reports.append, on_restart=lambda p: restarted.append(p.name))
    proc.start()
    try:
        message = str(_poll_until_raises(sup, 20))
    finally:
        stop_all([proc], 2)
    assert restarted == ["tiny", "tiny"] and sup.restarts() == {"tiny": 2}
    assert message.startswith("tiny exited 3 times within 300 s, giving up (at most 2 restart(s) in 300 s); "
                              "the last time (exit code 2,")
    exits = [r for r in reports if "exited unexpectedly" in r]
    assert len(exits) == 2 and "exit code 2" in exits[0]
    assert "restarting it in 0.1 s" in exits[0] and "restarting it in 0.2 s" in exits[1]
    markers = [ln for ln in proc.log_file.read_text().splitlines() if ln.startswith(RUN_MARKER)]
    assert len(markers) == 3 and "restart 2" in markers[2] and "exit code 2" in markers[2]


def test_no_restarts_allowed_gives_up_at_the_first_exit(tmp_path: Path) -> None:
    proc = _child(tmp_path, "import time; time.sleep(0.3)")
    sup = Supervisor([proc], RestartPolicy(startup_s=0.1, max_restarts=0), report=lambda _: None)
    proc.start()
    assert str(_poll_until_raises(sup, 10)).startswith("tiny exited 1 time within 300 s, giving up")


def test_live_view_shows_restarts_by_process() -> None:
    from streams.tools.liveview import LiveView, Snapshot
    from streams.topics import ALERTS, PREDICTIONS, TELEMETRY, TELEMETRY_DLQ

    view = LiveView.__new__(LiveView)  # no broker: render only
    view.previous, view.restarts = None, lambda: {}
    snap = Snapshot(0.0, dict.fromkeys((TELEMETRY, PREDICTIONS, TELEMETRY_DLQ, ALERTS), 0), 0, 0,
                    restarts={"score worker 1": 2, "sink": 0, "simulator": 1})
    rows = dict(zip(view.render(snap).columns[0]._cells, view.render(snap).columns[1]._cells, strict=True))
    assert rows["restarts"] == "3  (score worker 1: 2, simulator: 1)"
