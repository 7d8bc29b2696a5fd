"""PostgreSQL over TLS, as ``EVTWIN_DATABASE_URL=…?sslmode=verify-full&sslrootcert=…`` sets it up:
the database sink's writer and ``evtwin export`` reach the database through a server that takes
TLS connections only, with a certificate from a throwaway CA; a client that trusts another CA, or
that does not ask for TLS, is refused.

The embedded PostgreSQL is built without TLS ("SSL is not supported by this build"), so the TLS
end is a terminator in front of it that speaks PostgreSQL's TLS negotiation
(``tests.support.tls_proxy.TlsTerminator(postgres=True)``): the client side — libpq through
psycopg, with our URL handling in between — is what is under test, and it is the real one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from connectors.embedded.process import free_port
from connectors.timescale import DatabaseUnavailableError, TimescaleWriter
from tests.support.certs import make_ca_and_server_cert
from tests.support.cli import cli_env, run_cli
from tests.support.database import drop_database, fresh_database
from tests.support.sink_records import ms, prediction
from tests.support.tls_proxy import TlsTerminator

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tls_db(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TlsTerminator, dict[str, Path]]]:  # type: ignore[no-untyped-def]
    """(URL of a fresh database with the host:port replaced by the TLS terminator's, the
    terminator, the certificates)."""
    _, ep = stack
    plain = fresh_database(ep.database_url, "evtwin_tls")
    certs = make_ca_and_server_cert(tmp_path_factory.mktemp("pg-certs"))
    parts = urlsplit(plain)
    port = free_port()
    with TlsTerminator(port, parts.port or 5432, certs["cert"], certs["key"], postgres=True) as terminator:
        netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{port}"
        yield urlunsplit(parts._replace(netloc=netloc)), terminator, certs
    drop_database(plain)


def _with(url: str, **params: str) -> str:
    return url + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def test_the_sink_writer_and_export_go_over_tls(stack, tls_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, terminator, certs = tls_db
    secure = _with(url, sslmode="verify-full", sslrootcert=str(certs["ca"]))
    rows = [prediction("TLS-1", ms(T0 + timedelta(seconds=30 * i)), charge_cycles=i) for i in range(50)]
    before = len(terminator.tls_versions)
    with TimescaleWriter(secure, retry_for_s=10) as writer:
        assert writer.write_predictions(rows) == 50
    with psycopg.connect(secure) as conn:
        assert conn.info.pgconn.ssl_in_use  # libpq's own word: this session is encrypted
        count = conn.execute("SELECT count(*) FROM ev_telemetry WHERE battery_id = 'TLS-1'").fetchone()
    assert count == (50,)
    assert len(terminator.tls_versions) >= before + 2
    assert set(terminator.tls_versions) <= {"TLSv1.2", "TLSv1.3"}

    settings, _ = stack
    result = run_cli(["export", "--from", T0.isoformat(), "--to", (T0 + timedelta(hours=1)).isoformat(),
                      "--format", "csv", "--to-uri", f"file://{tmp_path}/tls.csv"],
                     cli_env(settings.state_dir, EVTWIN_DATABASE_URL=secure))
    assert result.returncode == 0, result.stderr
    assert len((tmp_path / "tls.csv").read_text().strip().splitlines()) == 1 + 50  # header + rows


def test_a_server_certificate_from_another_ca_is_refused(tls_db) -> None:  # type: ignore[no-untyped-def]
    url, _, certs = tls_db
    wrong = _with(url, sslmode="verify-full", sslrootcert=str(certs["other_ca"]))
    writer = TimescaleWriter(wrong, retry_for_s=0.5, backoff_initial_s=0.1)
    with pytest.raises(DatabaseUnavailableError, match="certificate verify failed"):
        writer.connect()


def test_a_client_that_does_not_ask_for_tls_is_refused(tls_db) -> None:  # type: ignore[no-untyped-def]
    url, terminator, _ = tls_db
    before = len(terminator.tls_versions)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_with(url, sslmode="disable"), connect_timeout=5).close()
    assert len(terminator.tls_versions) == before
