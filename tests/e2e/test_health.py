"""/healthz and /readyz of every pipeline process, as Kubernetes probes them (infra/k8s): a score
worker is ready once it joined its group with its model loaded, a sink once it joined its group
(after its migrations), the ingest bridge once subscribed on the MQTT broker, the simulator once
it produces; /metrics stays on the same port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from connectors.embedded.process import stop_processes
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""  # not listening yet


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the process exited with {proc.returncode}"
        status, body = _get(port, "/readyz")
        if status == 200:
            return json.loads(body)  # type: ignore[no-any-return]
        assert status in (0, 503), (status, body)
        time.sleep(0.3)
    raise AssertionError(f"not ready within {timeout} s: {_get(port, '/readyz')}")


@pytest.fixture
def spawn(stack, trained_model) -> Iterator:  # type: ignore[no-untyped-def]
    settings, _ = stack
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], **env: str) -> tuple[subprocess.Popen[bytes], int]:
        port = _free_port()
        e = cli_env(settings.state_dir, EVTWIN_METRICS_PORT=str(port), EVTWIN_MODEL_DIR=str(trained_model), **env)
        log = open(settings.state_dir / f"health-{args[0]}-{os.getpid()}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(EVTWIN + args, env=e, cwd=REPO, stdout=log, stderr=log)
        procs.append(proc)
        return proc, port

    yield start
    stop_processes(procs)


def test_each_pipeline_process_is_ready_once_it_works_and_live(spawn) -> None:  # type: ignore[no-untyped-def]
    tag = f"health-{os.getpid()}-{time.time_ns()}"
    worker, worker_port = spawn(["worker"], EVTWIN_APP_ID=f"{tag}-score")
    sink, sink_port = spawn(["sink"], EVTWIN_SINK_APP_ID=f"{tag}-sink")
    ingest, ingest_port = spawn(["ingest"])
    sim, sim_port = spawn(["simulate", "--batteries", "5", "--duration", "60"])

    assert _wait_ready(worker_port, worker)["met"] == ["group", "model"]
    assert _wait_ready(sink_port, sink)["met"] == ["group"]
    assert _wait_ready(ingest_port, ingest)["met"] == ["mqtt"]
    assert _wait_ready(sim_port, sim)["ready"] is True
    for port in (worker_port, sink_port, ingest_port, sim_port):
        status, body = _get(port, "/healthz")
        assert status == 200 and json.loads(body)["live"] is True
        status, body = _get(port, "/metrics")
        assert status == 200 and "process_cpu_seconds_total" in body
