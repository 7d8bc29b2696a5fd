"""Shared fixtures: one real embedded stack for the session (broker, PostgreSQL, MQTT broker, schema
registry) on free loopback ports, in a temporary state directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.embedded.process import stop_processes
from connectors.embedded.stack import EmbeddedStack
from connectors.endpoints import Endpoints
from streams.settings import Settings
from streams.topics import topic_specs

REPO = Path(__file__).resolve().parent.parent
EVTWIN = [sys.executable, "-m", "streams.cli"]


def free_port_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for an embedded stack on free ports in ``state_dir``."""
    values: dict[str, object] = dict(
        state_dir=state_dir, embedded_kafka_port=0, embedded_postgres_port=0,
        embedded_mqtt_port=0, embedded_schema_registry_port=0,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def state_root() -> Iterator[Path]:
    """A temporary directory that PostgreSQL's system user can traverse when we run as root
    (pytest's own temporary directories are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="evtwin-tests-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def state_dir(state_root: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh state directory for one test."""
    path = Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=state_root))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def stack(state_root: Path) -> Iterator[tuple[Settings, Endpoints]]:
    """A running embedded stack with the schema registry and our topics."""
    from connectors.kafka import ensure_topics

    state = state_root / "session-stack"
    settings = free_port_settings(state, embedded_schema_registry=True)
    with EmbeddedStack(settings) as endpoints:
        ensure_topics(endpoints.kafka_bootstrap_servers, topic_specs(settings.topic_partitions))
        yield settings, endpoints


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


def read_topic(bootstrap: str, topic: str, keep, want: int, timeout: float = 30.0, done=None) -> list:  # type: ignore[no-untyped-def]
    """Read ``topic`` from the beginning until ``want`` messages pass ``keep``, or ``done(found)``
    says so, or ``timeout`` passes."""
    import time as _time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{os.getpid()}-{_time.time()}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
        found = []
        deadline = _time.monotonic() + timeout
        while len(found) < want and _time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error() and keep(msg):
                found.append(msg)
                if done is not None and done(found):
                    break
        return found
    finally:
        consumer.close()


@pytest.fixture(scope="session")
def trained_model(state_root: Path) -> Path:
    """A small, quick model (the one `evtwin up` trains on first run), trained once per session."""
    from training.train import train

    model_dir = state_root / "model-a"
    train(None, model_dir, quick=True, seed=0)
    return model_dir


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


@pytest.fixture
def workers(stack, trained_model: Path, request: pytest.FixtureRequest) -> Iterator[Workers]:  # type: ignore[no-untyped-def]
    """Start score workers with ``workers.start(n)``; a fresh consumer group per test."""
    settings, _ = stack
    w = Workers(settings, trained_model, f"test-{request.node.name[:30]}-{os.getpid()}")
    yield w
    w.stop()
