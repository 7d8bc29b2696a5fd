"""SASL/SCRAM with the ``EVTWIN_KAFKA_SASL_*`` settings: our CLI (librdkafka) logs in with SCRAM
and works, and a login that is refused is one line that says so and names the settings, instead of
a metadata time-out.

Two servers: Tansu with ``--authentication`` (a real broker's refusal; Tansu 0.6 cannot hold a SCRAM
user with the storage engines of its wheel, so nobody logs in there) and Tansu behind
:class:`~tests.support.scram_proxy.ScramTerminator`, a SASL listener whose SCRAM server is scramp's,
where the right password gets in (the score worker's aiokafka login: ``tests/e2e/test_kafka_scram.py``)."""

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
from tests.support.scram_proxy import ScramTerminator, scram_kafka

PASSWORD = "a-long-kafka-password"


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


def _refused_line(bootstrap: str, state_dir: Path) -> str:
    """The one line ``evtwin topics list`` prints when it logs in to ``bootstrap`` as twin with a
    wrong password (it must fail, and never print the password)."""
    env = cli_env(state_dir, EVTWIN_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                  EVTWIN_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", EVTWIN_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                  EVTWIN_KAFKA_SASL_USERNAME="twin", EVTWIN_KAFKA_SASL_PASSWORD="not-the-password")
    result = run_cli(["topics", "list"], env, timeout=60)
    assert result.returncode == 1, result.stdout
    assert "not-the-password" not in result.stderr
    # librdkafka's own log lines (its threads) may still come after ours: find ours, once
    ours = [ln for ln in result.stderr.splitlines() if "EVTWIN_KAFKA_SASL_*/SSL_*" in ln]
    assert len(ours) == 1 and "SASL authentication error" in ours[0], result.stderr
    return ours[0]


def test_a_refused_scram_login_is_one_clear_line(scram_broker: str, state_dir: Path) -> None:
    assert "SCRAM" in _refused_line(scram_broker, state_dir)

    # Without SASL the broker answers nothing at all: the settings above are what reached SCRAM.
    with pytest.raises(Exception, match="cannot list topics"):
        kafka.list_topics(scram_broker, timeout_s=3)


@pytest.fixture
def scram_listener(state_dir: Path) -> Iterator[tuple[str, ScramTerminator]]:
    with scram_kafka(state_dir, {"twin": PASSWORD}) as listener:
        yield listener


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_the_cli_logs_in_with_scram(scram_listener: tuple[str, ScramTerminator], state_dir: Path,
                                    mechanism: str) -> None:
    bootstrap, terminator = scram_listener
    env = cli_env(state_dir, EVTWIN_KAFKA_BOOTSTRAP_SERVERS=bootstrap, EVTWIN_TOPIC_PARTITIONS="2",
                  EVTWIN_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", EVTWIN_KAFKA_SASL_MECHANISM=mechanism,
                  EVTWIN_KAFKA_SASL_USERNAME="twin", EVTWIN_KAFKA_SASL_PASSWORD=PASSWORD)
    created = run_cli(["topics", "create"], env, timeout=60)
    assert created.returncode == 0, created.stderr
    listed = run_cli(["topics", "list"], env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "ev.telemetry.v1" in listed.stdout and "missing" not in listed.stdout.lower(), listed.stdout
    assert [(login.user, login.mechanism) for login in terminator.logins if login.accepted] and \
        {(login.user, login.mechanism) for login in terminator.logins} == {("twin", mechanism)}
    assert not [login for login in terminator.logins if not login.accepted]

    # Without SASL, the listener lets nothing through: the topics above came over the login.
    with pytest.raises(Exception, match="cannot list topics"):
        kafka.list_topics(bootstrap, timeout_s=3)


def test_a_wrong_scram_password_is_one_clear_line(scram_listener: tuple[str, ScramTerminator],
                                                  state_dir: Path) -> None:
    bootstrap, terminator = scram_listener
    assert "invalid credentials" in _refused_line(bootstrap, state_dir)
    assert terminator.logins and not [login for login in terminator.logins if login.accepted]
