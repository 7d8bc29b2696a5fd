"""SASL/SCRAM against a real broker that requires it (Tansu with ``--authentication``): with the
``EVTWIN_KAFKA_SASL_*`` settings our clients log in with SCRAM, and a login the broker refuses is
one line that says so and names the settings, instead of a metadata time-out.

Tansu 0.6 cannot hold a SCRAM user while authentication is on with its in-memory storage (users
are created through the broker, which then refuses the unauthenticated request), so what runs here
is the refused login; a successful one needs a broker with users (Redpanda, Kafka)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import kafka
from connectors.embedded.kafka_broker import tansu_binary
from tests.support.cli import cli_env, run_cli
from tests.support.receivers import free_port, wait_until


@pytest.fixture
def scram_broker(state_dir: Path) -> Iterator[str]:
    port = free_port()
    broker = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                               "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                               "--storage-engine", "memory://tansu/", "--authentication"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        assert wait_until(listening, 10)
        yield f"127.0.0.1:{port}"
    finally:
        broker.kill()
        broker.wait()


def test_a_refused_scram_login_is_one_clear_line(scram_broker: str, state_dir: Path) -> None:
    env = cli_env(state_dir, EVTWIN_KAFKA_BOOTSTRAP_SERVERS=scram_broker,
                  EVTWIN_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", EVTWIN_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                  EVTWIN_KAFKA_SASL_USERNAME="twin", EVTWIN_KAFKA_SASL_PASSWORD="not-the-password")
    result = run_cli(["topics", "list"], env, timeout=60)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "SASL authentication error" in line and "SCRAM" in line, result.stderr
    assert "EVTWIN_KAFKA_SASL_*/SSL_*" in line and "not-the-password" not in result.stderr

    # Without SASL the broker answers nothing at all: the settings above are what reached SCRAM.
    with pytest.raises(Exception, match="cannot list topics"):
        kafka.list_topics(scram_broker, timeout_s=3)
