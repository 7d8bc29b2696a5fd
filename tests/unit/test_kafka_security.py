"""Kafka connection security (TLS, SASL): the settings, their checks with one-line errors, and what
the confluent-kafka clients and the Faust (aiokafka) apps are handed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from connectors import KafkaSecurityError, kafka
from connectors.kafka import KafkaSecurity
from streams.cli import main
from streams.runtime.faust_app import faust_credentials, make_app
from streams.settings import Settings


@pytest.fixture(autouse=True)
def _plaintext_after() -> Iterator[None]:
    """Every test leaves the process's clients as it found them (PLAINTEXT)."""
    yield
    kafka.use_security(KafkaSecurity())


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Path]:
    """A CA and a client certificate with its key (PEM files from a throwaway CA)."""
    from tests.support.certs import make_ca_and_server_cert

    made = make_ca_and_server_cert(tmp_path)
    return {"ca": made["ca"], "cert": made["client_cert"], "key": made["client_key"],
            "server_key": made["key"]}


def test_sasl_ssl_maps_to_librdkafka_properties(pem: dict[str, Path]) -> None:
    security = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="twin",
                             sasl_password="pw", ca_file=pem["ca"], cert_file=pem["cert"], key_file=pem["key"])
    security.check()
    assert security.client_config() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "twin",
        "sasl.password": "pw", "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(pem["ca"]), "ssl.certificate.location": str(pem["cert"]),
        "ssl.key.location": str(pem["key"]),
    }
    assert "pw" not in repr(security)


def test_every_client_gets_the_process_security(pem: dict[str, Path]) -> None:
    assert kafka.client_config("h:9092") == {"bootstrap.servers": "h:9092"}  # PLAINTEXT adds nothing
    kafka.use_security(KafkaSecurity(protocol="SSL", ca_file=pem["ca"]))
    config = kafka.client_config("h:9093", **{"linger.ms": 2})
    assert config["security.protocol"] == "SSL" and config["ssl.ca.location"] == str(pem["ca"])
    assert config["bootstrap.servers"] == "h:9093" and config["linger.ms"] == 2


@pytest.mark.parametrize(("fields", "says"), [
    ({"protocol": "SASL_SSL", "sasl_username": "twin"}, "EVTWIN_KAFKA_SASL_PASSWORD"),
    ({"protocol": "SASL_PLAINTEXT", "sasl_password": "pw"}, "EVTWIN_KAFKA_SASL_USERNAME"),
    ({"protocol": "SASL_SSL", "sasl_username": "t", "sasl_password": "p", "sasl_mechanism": "GSSAPI"},
     "EVTWIN_KAFKA_SASL_MECHANISM"),
    ({"protocol": "TLS"}, "EVTWIN_KAFKA_SECURITY_PROTOCOL"),
    ({"protocol": "PLAINTEXT", "ca_file": "CA"}, "set it to SSL or SASL_SSL"),
    ({"protocol": "SSL", "cert_file": "CERT"}, "EVTWIN_KAFKA_SSL_KEY_FILE"),
    ({"protocol": "SSL", "ca_file": Path("/nonexistent/ca.pem")}, "EVTWIN_KAFKA_SSL_CA_FILE=/nonexistent/ca.pem"),
    ({"protocol": "SSL", "cert_file": "CERT", "key_file": "SERVER_KEY"}, "the key the certificate's"),
    ({"protocol": "SSL", "ca_file": "KEY"}, "cannot be used for TLS"),
])
def test_settings_that_cannot_work_are_refused_with_the_fix(fields: dict, says: str,
                                                            pem: dict[str, Path]) -> None:
    fields = {k: pem[v.lower()] if v in ("CA", "CERT", "KEY", "SERVER_KEY") else v for k, v in fields.items()}
    with pytest.raises(KafkaSecurityError, match=says.replace("(", r"\(")):
        kafka.use_security(KafkaSecurity(**fields))
    assert kafka.security() == KafkaSecurity()  # the refused settings were not taken


def test_password_from_a_mounted_secret_file(tmp_path: Path, pem: dict[str, Path]) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("s3cret\n")
    settings = Settings(state_dir=tmp_path, kafka_security_protocol="SASL_SSL", kafka_sasl_username="twin",
                        kafka_sasl_password_file=secret, kafka_ssl_ca_file=pem["ca"])
    security = settings.kafka_security()
    assert security.sasl_password == "s3cret" and security.ca_file == pem["ca"]
    both = settings.model_copy(update={"kafka_sasl_password": SecretStr("other")})
    with pytest.raises(KafkaSecurityError, match="not both"):
        both.kafka_security()
    missing = settings.model_copy(update={"kafka_sasl_password_file": tmp_path / "absent"})
    with pytest.raises(KafkaSecurityError, match="EVTWIN_KAFKA_SASL_PASSWORD_FILE=.*absent"):
        missing.kafka_security()


def test_faust_apps_get_the_same_protocol_user_and_trust(tmp_path: Path) -> None:
    """What aiokafka receives from Faust's driver (``credentials_to_aiokafka_auth``)."""
    from tests.support.certs import make_ca_and_server_cert

    ca = make_ca_and_server_cert(tmp_path)["ca"]
    assert faust_credentials(KafkaSecurity()) is None
    auth = credentials_to_aiokafka_auth(faust_credentials(
        KafkaSecurity(protocol="SASL_SSL", sasl_username="twin", sasl_password="pw", ca_file=ca)))
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("twin", "pw")
    context = auth["ssl_context"]
    assert context.check_hostname and context.get_ca_certs()[0]["subject"] == ((("commonName", "evtwin test CA"),),)
    auth = credentials_to_aiokafka_auth(faust_credentials(KafkaSecurity(protocol="SASL_PLAINTEXT",
                                                                        sasl_username="u", sasl_password="p")))
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None
    assert credentials_to_aiokafka_auth(faust_credentials(
        KafkaSecurity(protocol="SSL", ca_file=ca)))["security_protocol"] == "SSL"

    kafka.use_security(KafkaSecurity(protocol="SSL", ca_file=ca))
    app = make_app(Settings(state_dir=tmp_path, kafka_bootstrap_servers="h:9093"), "h:9093", "t", 100)
    assert credentials_to_aiokafka_auth(app.conf.broker_credentials)["security_protocol"] == "SSL"


def test_cli_refuses_incomplete_settings_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EVTWIN_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("EVTWIN_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert main(["topics", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "set EVTWIN_KAFKA_BOOTSTRAP_SERVERS too" in err  # the embedded broker: PLAINTEXT

    monkeypatch.setenv("EVTWIN_KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9093")
    assert main(["topics", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "SASL_SSL needs a user and a password" in err
    assert kafka.security() == KafkaSecurity()
