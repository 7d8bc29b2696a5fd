"""A score worker on a Kafka listener that speaks mutual TLS only: Tansu (a real Kafka-compatible
broker) behind a TLS terminator that asks for a client certificate, both certificates from a
throwaway CA. The worker (its Faust consumer, its producer, its partition-state restore) and our
clients connect with the ``EVTWIN_KAFKA_SECURITY_PROTOCOL=SSL`` and ``EVTWIN_KAFKA_SSL_*``
settings alone; a client trusting another CA is refused in one line that names the settings, and
plain Kafka or TLS without a client certificate gets nowhere."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import kafka
from connectors.kafka import KafkaSecurity
from streams.topics import topic_specs
from tests.support.certs import make_ca_and_server_cert
from tests.support.cli import cli_env, run_cli
from tests.support.receivers import free_port
from tests.support.relay import hidden_tansu
from tests.support.tls_proxy import TlsTerminator
from tests.support.worker_check import assert_worker_scores_everything

PARTITIONS = 3


@pytest.fixture
def tls_kafka(state_dir: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    """``(bootstrap, certificate paths)`` of a broker reachable over mutual TLS only: Tansu listens
    in the clear on a port nobody is told about and advertises the terminator's port."""
    certs = make_ca_and_server_cert(state_dir)
    outer = free_port()
    try:
        with hidden_tansu(state_dir, outer) as inner, \
                TlsTerminator(outer, inner, certs["cert"], certs["key"], client_ca=certs["ca"]):
            yield f"127.0.0.1:{outer}", certs
    finally:
        kafka.use_security(KafkaSecurity())


def test_a_worker_scores_over_tls_and_a_wrong_ca_is_refused(tls_kafka, trained_model: Path,  # type: ignore[no-untyped-def]
                                                            state_dir: Path) -> None:
    bootstrap, certs = tls_kafka
    # Plain Kafka to the TLS listener, and TLS without a client certificate, get nowhere.
    with pytest.raises(Exception, match="cannot list topics"):
        kafka.list_topics(bootstrap, timeout_s=3)
    kafka.use_security(KafkaSecurity(protocol="SSL", ca_file=certs["ca"]))
    with pytest.raises(Exception, match="cannot list topics"):
        kafka.list_topics(bootstrap, timeout_s=3)
    kafka.use_security(KafkaSecurity(protocol="SSL", ca_file=certs["ca"], cert_file=certs["client_cert"],
                                     key_file=certs["client_key"]))
    kafka.ensure_topics(bootstrap, topic_specs(PARTITIONS))

    env = cli_env(state_dir, EVTWIN_KAFKA_BOOTSTRAP_SERVERS=bootstrap, EVTWIN_KAFKA_SECURITY_PROTOCOL="SSL",
                  EVTWIN_KAFKA_SSL_CA_FILE=str(certs["ca"]), EVTWIN_KAFKA_SSL_CERT_FILE=str(certs["client_cert"]),
                  EVTWIN_KAFKA_SSL_KEY_FILE=str(certs["client_key"]), EVTWIN_TOPIC_PARTITIONS=str(PARTITIONS),
                  EVTWIN_MODEL_DIR=str(trained_model), EVTWIN_APP_ID=f"tls-{os.getpid()}",
                  EVTWIN_METRICS_PORT="0")
    assert_worker_scores_everything(bootstrap, env, state_dir, "TLS")

    # A client that trusts another CA: one line, the TLS failure and the settings to check.
    bad = run_cli(["topics", "list"], {**env, "EVTWIN_KAFKA_SSL_CA_FILE": str(certs["other_ca"])}, timeout=60)
    assert bad.returncode == 1
    err = bad.stderr.strip().splitlines()[-1]
    assert "certificate verify failed" in err and "EVTWIN_KAFKA_SASL_*/SSL_*" in err, bad.stderr
