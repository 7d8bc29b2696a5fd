"""A score worker on a Kafka listener that takes SASL/SCRAM logins only (Tansu behind
:class:`~tests.support.scram_proxy.ScramTerminator`): the worker's Faust consumer and producer and
its partition-state restore (aiokafka) and our producers and readers (librdkafka) log in with the
``EVTWIN_KAFKA_SASL_*`` settings alone, and every event is scored; a worker with a wrong password
stops with one line that names the settings."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import kafka
from connectors.kafka import KafkaSecurity
from streams.topics import topic_specs
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO
from tests.support.scram_proxy import ScramTerminator, scram_kafka
from tests.support.worker_check import assert_worker_scores_everything

PARTITIONS = 3
PASSWORD = "a-long-kafka-password"


@pytest.fixture
def scram_listener(state_dir: Path) -> Iterator[tuple[str, ScramTerminator]]:
    try:
        with scram_kafka(state_dir, {"twin": PASSWORD}) as listener:
            yield listener
    finally:
        kafka.use_security(KafkaSecurity())


def test_a_worker_scores_over_scram(scram_listener: tuple[str, ScramTerminator], trained_model: Path,
                                    state_dir: Path) -> None:
    bootstrap, terminator = scram_listener
    kafka.use_security(KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                                     sasl_username="twin", sasl_password=PASSWORD))
    kafka.ensure_topics(bootstrap, topic_specs(PARTITIONS))
    env = cli_env(state_dir, EVTWIN_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                  EVTWIN_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", EVTWIN_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                  EVTWIN_KAFKA_SASL_USERNAME="twin", EVTWIN_KAFKA_SASL_PASSWORD=PASSWORD,
                  EVTWIN_TOPIC_PARTITIONS=str(PARTITIONS), EVTWIN_MODEL_DIR=str(trained_model),
                  EVTWIN_APP_ID=f"scram-{os.getpid()}", EVTWIN_METRICS_PORT="0")
    assert_worker_scores_everything(bootstrap, env, state_dir, "SCRAM")
    # The worker's own connections (aiokafka, client id faust-…) logged in, and nothing was refused.
    assert any(login.accepted and login.client_id.startswith("faust") for login in terminator.logins), \
        terminator.logins
    assert all(login.accepted and login.user == "twin" for login in terminator.logins)

    # The same worker with a wrong password: it stops, and says why in one line.
    bad = subprocess.run(EVTWIN + ["worker"], env={**env, "EVTWIN_KAFKA_SASL_PASSWORD": "not-the-password"},
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    line = bad.stderr.strip().splitlines()[-1]
    assert "SASL" in line and "EVTWIN_KAFKA_SASL_*" in line, bad.stderr[-3000:]
    assert "not-the-password" not in bad.stderr
    assert any(not login.accepted for login in terminator.logins)
