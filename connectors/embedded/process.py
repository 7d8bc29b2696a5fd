"""Child processes of the embedded stack that die with their parent.

Every service runs as a child process with ``PR_SET_PDEATHSIG``: when the parent goes away — a
clean exit, Ctrl-C, SIGTERM or SIGKILL — the kernel signals the child, so no broker or database is
left behind. Output goes to a log file in the state directory; a failed start reports its last line.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from connectors import ServiceStartError

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


def last_line(path: Path) -> str:
    """Return the last non-empty line of a log file (for one-line error messages)."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    lines = [ln for ln in lines if "GLIBC_2.39" not in ln]  # noida-db's harmless warning
    return lines[-1] if lines else ""


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

    def start(self) -> None:
        """Start the child; its output is appended to :attr:`log_file`."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env[SUPERVISOR_ENV] = str(os.getpid())  # see exit_when_orphaned
        with open(self.log_file, "ab") as out:
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
        log.debug("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fail_if_exited(self) -> None:
        """Raise :class:`ServiceStartError` with the log's last line if the child has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            detail = last_line(self.log_file) or f"exit code {self.proc.returncode}"
            raise ServiceStartError(f"{self.name} exited during start-up: {detail} (log: {self.log_file})")

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
    "SUPERVISOR_ENV",
    "ChildService",
    "ManagedProcess",
    "check_port_free",
    "ensure_writable_dir",
    "exit_when_orphaned",
    "free_port",
    "last_line",
    "port_for",
    "python_child_env",
    "require_binary",
    "stop_all",
    "stop_processes",
    "wait_until",
]
