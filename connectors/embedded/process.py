"""Child processes of the embedded stack that die with their parent.

Every service runs as a child process with ``PR_SET_PDEATHSIG``: when the parent goes away — a
clean exit, Ctrl-C, SIGTERM or SIGKILL — the kernel signals the child, so no broker or database is
left behind. Output goes to a log file in the state directory, each run after a marker line; a
failed process is reported with its exit code or signal and the relevant lines of its last run's
log (:func:`log_excerpt`). :class:`Supervisor` restarts processes that exit after start-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import re
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from connectors import ConnectorError, ServiceStartError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
SUPERVISOR_ENV = "EVTWIN_SUPERVISOR_PID"  # set for every child: the pid of the process that started it
_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup(death_signal: int, user: str | None) -> Callable[[], None]:
    """Return a ``preexec_fn``: drop to ``user`` (if any), then ask for ``death_signal`` when the
    parent dies. The order matters: a change of credentials clears the parent-death signal."""
    ids = None
    if user is not None:
        entry = pwd.getpwnam(user)
        ids = (entry.pw_uid, entry.pw_gid)

    def setup() -> None:
        os.setpgid(0, 0)
        if ids is not None:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
        _libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os.kill(os.getpid(), death_signal)

    return setup


def check_port_free(port: int, service: str, setting: str) -> None:
    """Raise :class:`ServiceStartError` if 127.0.0.1:``port`` is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as servers set it: a port whose old connections linger in TIME_WAIT
        # (a restarted service) is free; a port with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ServiceStartError(
                f"{service}: port {port} on 127.0.0.1 is in use; stop what uses it, or set "
                f"{setting} to another port (0 picks a free one)"
            ) from None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_for(requested: int, service: str, setting: str) -> int:
    """Resolve a port setting: 0 picks a free port; any other must be free."""
    if requested == 0:
        return free_port()
    check_port_free(requested, service, setting)
    return requested


def ensure_writable_dir(path: Path, service: str) -> None:
    """Create ``path`` and prove it writable, or raise :class:`ServiceStartError`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ServiceStartError(
            f"{service}: data directory {path} is not writable ({exc.strerror}); "
            "fix its permissions or set EVTWIN_STATE_DIR to a writable directory"
        ) from None


def require_binary(path: Path, service: str, hint: str) -> None:
    """Raise :class:`ServiceStartError` unless ``path`` is an executable file."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ServiceStartError(f"{service}: binary {path} is missing or not executable; {hint}")


#: Start of the line :meth:`ManagedProcess.start` writes into the log before each run.
RUN_MARKER = "=== evtwin: "
_NOISE = ("GLIBC_2.39",)  # noida-db's harmless warning
# A log line at level ERROR or worse, in the formats our processes and services write: plain
# ("12:00:01 ERROR   name: …"), Faust's ("[…] [pid] [ERROR] …"), JSON ('"level": "ERROR"'),
# PostgreSQL's ("ERROR:  …", "FATAL:  …").
_ERROR_LINE = re.compile(r'(?:^|[\s\["])(?:ERROR|CRITICAL|FATAL|PANIC)(?:[\s\]",:]|$)')
_TRACEBACK = "Traceback (most recent call last):"
_CARETS = re.compile(r"\s*[\^~]+\s*")  # Python 3.11+'s markers under a traceback's line


def _last_run(path: Path, tail_bytes: int = 256 * 1024) -> list[str]:
    """The non-empty lines a process wrote in its last run: after the last :data:`RUN_MARKER`
    line, within the last ``tail_bytes`` of the file; noise lines dropped."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    lines = text.splitlines()
    if size > tail_bytes:
        lines = lines[1:]  # the first one is cut
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(RUN_MARKER):
            lines = lines[i + 1:]
            break
    return [ln.rstrip() for ln in lines
            if ln.strip() and not any(n in ln for n in _NOISE) and not _CARETS.fullmatch(ln)]


def last_line(path: Path) -> str:
    """Return the last non-empty line of a log file's last run (for one-line error messages)."""
    lines = _last_run(path)
    return lines[-1].strip() if lines else ""


def log_excerpt(path: Path, max_lines: int = 12, near_end: int = 200, *, fallback: bool = True) -> list[str]:
    """The lines of a log that tell why its process failed: from the last run's final
    ``near_end`` lines, its last traceback (header, then the frames nearest the error and the
    exception line) and the ERROR / CRITICAL / FATAL lines around it; when there are none, the
    last few lines (or nothing, without ``fallback``). Never a stray INFO or WARNING line picked
    for being last among error lines."""
    lines = _last_run(path)[-near_end:]
    if not lines:
        return []
    tb_start = max((i for i, ln in enumerate(lines) if ln.lstrip().startswith(_TRACEBACK)), default=None)
    tb: list[int] = []
    if tb_start is not None:
        end = tb_start + 1  # frames are indented; the exception line that ends them is not
        while end < len(lines) and lines[end].startswith((" ", "\t")):
            end += 1
        tb = list(range(tb_start, min(end + 1, len(lines))))
    errors = [i for i, ln in enumerate(lines) if _ERROR_LINE.search(ln) and i not in tb]
    if not tb and not errors:
        return lines[-min(5, max_lines):] if fallback else []
    picked: dict[float, str] = {}
    if tb:
        keep = max(max_lines - min(len(errors), 4), 3)
        if len(tb) > keep:  # the header, a gap, then the frames nearest the error
            picked[tb[0] + 0.5] = "  …"
            tb = [tb[0]] + tb[len(tb) - (keep - 2):]
        picked.update((i, lines[i]) for i in tb)
    room = max_lines - len(picked)
    picked.update((i, lines[i]) for i in (errors[-room:] if room > 0 else []))
    return [picked[k] for k in sorted(picked)]


def describe_exit(returncode: int) -> str:
    """``exit code 1`` or ``killed by signal 9 (SIGKILL)``: how a child process ended."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"killed by signal {-returncode}"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"


def failure_report(headline: str, log_file: Path) -> str:
    """``headline``, where the log is, then its relevant lines (:func:`log_excerpt`), indented."""
    excerpt = log_excerpt(log_file)
    if not excerpt:
        return f"{headline}; its log is empty ({log_file})"
    body = "\n".join(f"    {ln}" for ln in excerpt)
    return f"{headline}; from its log ({log_file}):\n{body}"


class ManagedProcess:
    """A child process of the stack: started with a parent-death signal, stopped with a signal,
    a grace period, then SIGKILL.

    Args:
        name: The service's name, for messages.
        argv: Program and arguments.
        log_file: Where stdout and stderr go.
        stop_signal: Signal for a clean stop (and for the parent's death).
        user: Run as this system user (needs root).
        env: Environment of the child; ``None`` inherits ours.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_file: Path,
        *,
        stop_signal: int = signal.SIGTERM,
        user: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_file = log_file
        self.stop_signal = stop_signal
        self.user = user
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.monotonic() of the last start

    def start(self, note: str = "") -> None:
        """Start the child; its output is appended to :attr:`log_file`, after a marker line
        (:data:`RUN_MARKER`, with ``note``) that separates this run from earlier ones."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env[SUPERVISOR_ENV] = str(os.getpid())  # see exit_when_orphaned
        with open(self.log_file, "ab") as out:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            out.write(f"{RUN_MARKER}{stamp} starting {self.name}{'; ' + note if note else ''} ===\n".encode())
            out.flush()
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_child_setup(self.stop_signal, self.user),
                    env=env,
                    cwd=self.cwd,
                )
            except OSError as exc:
                raise ServiceStartError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from None
        self.started_at = time.monotonic()
        log.debug("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        """The exit status once the child has exited (negative: the signal that ended it)."""
        return self.proc.poll() if self.proc is not None else None

    def failure(self, when: str) -> str:
        """What to tell about the exited child: its name, ``when`` it exited, how (exit code or
        signal), after how long, and the relevant lines of its log."""
        code = self.returncode()
        how = describe_exit(code) if code is not None else "still running"
        ran = time.monotonic() - self.started_at
        return failure_report(f"{self.name} exited {when} ({how}, {ran:.0f} s after it started)",
                              self.log_file)

    def fail_if_exited(self, when: str = "during start-up") -> None:
        """Raise :class:`ServiceStartError` (see :meth:`failure`) if the child has exited."""
        if self.returncode() is not None:
            raise ServiceStartError(self.failure(when))

    def signal_stop(self) -> None:
        """Send the stop signal to the child's process group; do not wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)

    def wait_stopped(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the child to exit, then kill its process group."""
        if self.proc is None:
            return
        try:
            self.proc.wait(max(timeout_s, 0.0))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", self.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the child (and its process group) and wait for it."""
        stop_all([self], timeout_s)


def stop_all(procs: Sequence[ManagedProcess], timeout_s: float = 10.0) -> None:
    """Stop processes together: signal every one, then wait for all within one ``timeout_s``
    (killing those still running), so N processes take the time of the slowest, not the sum."""
    for proc in procs:
        proc.signal_stop()
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        proc.wait_stopped(deadline - time.monotonic())


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> None:
    """Stop plain child processes (no process group) together: SIGTERM to every one, then wait
    for all within one ``timeout_s``, killing those still running."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class SupervisionError(ConnectorError):
    """A supervised process failed at start-up, or exited more often than its restart policy
    allows; the message names it, how it exited, and the relevant lines of its log."""


@dataclass(frozen=True)
class RestartPolicy:
    """When :class:`Supervisor` restarts a process, and when it gives up.

    Args:
        startup_s: A process is *started* once it has been seen alive this long after its first
            start; an exit before that is a start-up failure and is not retried.
        backoff_s: Wait before the first restart; doubled for each further exit within the window.
        backoff_max_s: Longest wait before a restart.
        max_restarts: Restarts of one process allowed within ``window_s``; the exit after them
            gives up (0: never restart).
        window_s: The sliding window of ``max_restarts``.
    """

    startup_s: float = 15.0
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0

    def delay(self, recent_exits: int) -> float:
        """Wait before a restart when the process exited ``recent_exits`` times before in the window."""
        return float(min(self.backoff_s * 2.0 ** min(recent_exits, 30), self.backoff_max_s))


@dataclass
class _Supervised:
    proc: ManagedProcess
    started: bool = False  # seen alive past the start-up grace of its first run
    exits: deque[float] = field(default_factory=deque)  # unexpected exits within the window
    restarts: int = 0
    restart_at: float | None = None  # a restart is pending at this time.monotonic()
    last_exit: str = ""


class Supervisor:
    """Keeps a set of started :class:`ManagedProcess` es running: call :meth:`poll` often, from the
    thread that started them (the parent-death signal follows the thread that forks).

    A process that exits before it has been alive ``policy.startup_s`` on its first run failed at
    start-up: :meth:`poll` raises :class:`SupervisionError`. One that exits later is restarted
    after a backoff (``backoff_s``, doubled for each further exit in ``window_s``, at most
    ``backoff_max_s``); its log gets a marker line saying so. An exit beyond ``max_restarts``
    within ``window_s`` raises :class:`SupervisionError`. Stopping is not its business: stop the
    processes (:func:`stop_all`) and do not poll any more.

    Args:
        procs: The processes, started or about to be (each is watched from its start).
        policy: The restart policy.
        report: Called with one line for every exit and restart (default: a warning in the log).
        on_exit: Called with a process that exited after start-up, before its restart is
            scheduled (to clean up after it).
        on_restart: Called with the process after each restart (for a metric).
        clock: For tests.
    """

    def __init__(self, procs: Sequence[ManagedProcess], policy: RestartPolicy, *,
                 report: Callable[[str], None] | None = None,
                 on_exit: Callable[[ManagedProcess], None] | None = None,
                 on_restart: Callable[[ManagedProcess], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.report = report or log.warning
        self.on_exit = on_exit
        self.on_restart = on_restart
        self.clock = clock
        self._watched = [_Supervised(p) for p in procs]

    def restarts(self) -> dict[str, int]:
        """Restarts so far, by process name."""
        return {w.proc.name: w.restarts for w in self._watched}

    def poll(self) -> None:
        """Look at every process once: note the started, restart those whose backoff is over,
        schedule a restart for those that exited.

        Raises:
            SupervisionError: A process failed at start-up or exited too often.
        """
        policy = self.policy
        for w in self._watched:
            now = self.clock()
            proc = w.proc
            if w.restart_at is not None:
                if now >= w.restart_at:
                    self._restart(w)
                continue
            if proc.proc is None:  # not started yet
                continue
            code = proc.returncode()
            if code is None:
                if not w.started and now - proc.started_at >= policy.startup_s:
                    w.started = True
                continue
            if not w.started:
                raise SupervisionError(proc.failure("during start-up"))
            while w.exits and now - w.exits[0] > policy.window_s:
                w.exits.popleft()
            w.last_exit = f"pid {proc.pid}, {describe_exit(code)}, after {now - proc.started_at:.0f} s"
            if len(w.exits) >= policy.max_restarts:
                raise SupervisionError(proc.failure(
                    f"{len(w.exits) + 1} time{'s' if w.exits else ''} within {policy.window_s:g} s, giving up (at most "
                    f"{policy.max_restarts} restart(s) in {policy.window_s:g} s); the last time"))
            delay = policy.delay(len(w.exits))
            w.exits.append(now)
            w.restart_at = now + delay
            excerpt = log_excerpt(proc.log_file, max_lines=3, fallback=False) if code > 0 else []
            self.report(f"{proc.name} exited unexpectedly ({w.last_exit})"
                        + (f": {excerpt[-1].strip()}" if excerpt else "")
                        + f"; restarting it in {delay:g} s (log: {proc.log_file})")
            if self.on_exit is not None:
                self.on_exit(proc)

    def _restart(self, w: _Supervised) -> None:
        w.restart_at = None
        w.restarts += 1
        w.proc.start(note=f"restart {w.restarts} by the supervisor; the previous run ended: {w.last_exit}")
        self.report(f"{w.proc.name} restarted (pid {w.proc.pid}, restart {w.restarts})")
        if self.on_restart is not None:
            self.on_restart(w.proc)


def exit_when_orphaned(grace_s: float = 15.0) -> None:
    """In a child started by ``evtwin up``: if the supervisor dies without stopping us, leave.

    The parent-death signal starts a clean shutdown; this thread makes sure it ends: once the
    parent is gone it waits ``grace_s`` seconds, then exits hard. A clean shutdown that hangs
    (its broker died with the same parent) would otherwise keep the process alive for ever.
    Does nothing unless :data:`SUPERVISOR_ENV` names our parent.
    """
    import threading

    try:
        supervisor = int(os.environ.get(SUPERVISOR_ENV, ""))
    except ValueError:
        return
    if os.getppid() != supervisor:
        return

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(0.5)
        time.sleep(grace_s)
        os._exit(70)  # EX_SOFTWARE: the shutdown did not finish

    threading.Thread(target=watch, name="orphan-watchdog", daemon=True).start()


def python_child_env() -> dict[str, str]:
    """Our environment, with this repository importable: for services run as ``python -m``."""
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    return env


class ChildService:
    """An embedded service that is one child process on a 127.0.0.1 port.

    Subclasses set :attr:`name` and :attr:`port_setting` and implement :meth:`argv` and
    :meth:`ready`.

    Args:
        kind: Which implementation (e.g. ``noida``), for messages and the log file's name.
        data_dir: Its data, configuration and log.
        port: TCP port; 0 picks a free one. A restart keeps the port it had.
    """

    name = "service"
    port_setting = ""

    def __init__(self, kind: str, data_dir: Path, port: int) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.requested_port = port
        self.port = 0
        self.proc: ManagedProcess | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.kind})" if self.kind != self.name else self.name

    def start(self) -> None:
        ensure_writable_dir(self.data_dir, self.name)
        self.port = port_for(self.port or self.requested_port, self.name, self.port_setting)
        self.proc = ManagedProcess(self.label, self.argv(), self.data_dir / f"{self.kind}.log",
                                   env=self.env(), cwd=self.data_dir)
        self.proc.start()

    def wait_ready(self, timeout_s: float) -> float:
        assert self.proc is not None
        return wait_until(self.ready, self.proc, timeout_s, f"{self.label} on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def wait_until(
    check: Callable[[], bool], proc: ManagedProcess, timeout_s: float, what: str
) -> float:
    """Poll ``check`` until it returns True; return the seconds it took.

    Raises:
        ServiceStartError: when the process exits first or ``timeout_s`` passes.
    """
    start = time.monotonic()
    delay = 0.02
    while True:
        proc.fail_if_exited()
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:  # a service that is not up yet refuses in many ways
            log.debug("%s not ready yet: %s", what, exc)
        if time.monotonic() - start > timeout_s:
            detail = last_line(proc.log_file)
            raise ServiceStartError(
                f"{what} was not ready after {timeout_s:.0f} s"
                + (f": {detail}" if detail else "")
                + f" (log: {proc.log_file})"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


__all__ = [
    "RUN_MARKER",
    "SUPERVISOR_ENV",
    "ChildService",
    "ManagedProcess",
    "RestartPolicy",
    "SupervisionError",
    "Supervisor",
    "check_port_free",
    "describe_exit",
    "ensure_writable_dir",
    "exit_when_orphaned",
    "failure_report",
    "free_port",
    "last_line",
    "log_excerpt",
    "port_for",
    "python_child_env",
    "require_binary",
    "stop_all",
    "stop_processes",
    "wait_until",
]
