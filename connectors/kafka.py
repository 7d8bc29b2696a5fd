"""Kafka clients (confluent-kafka) tuned for our topics, topic administration, and the
connection's security (TLS, SASL) that every client of the process uses.

Security is set once per process (:func:`use_security`, from the ``EVTWIN_KAFKA_SECURITY_*``,
``EVTWIN_KAFKA_SASL_*`` and ``EVTWIN_KAFKA_SSL_*`` settings, by the CLI at start-up); every client
built here applies it, and the Faust apps take the same settings as aiokafka credentials
(:func:`streams.runtime.faust_app.faust_credentials`). The embedded brokers speak PLAINTEXT.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from connectors import KafkaAdminError, KafkaDeliveryError, KafkaSecurityError

log = logging.getLogger(__name__)

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to the brokers and protects the connection.

    Attributes:
        protocol: ``PLAINTEXT``, ``SSL`` (TLS), ``SASL_PLAINTEXT`` or ``SASL_SSL`` (SASL over TLS:
            what Confluent Cloud, MSK and Redpanda Cloud ask for).
        sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``.
        sasl_username: SASL user (``SASL_*`` protocols).
        sasl_password: Its password (never logged, never in ``repr``).
        ca_file: PEM bundle of the CAs that sign the brokers' certificates; ``None`` = the
            system's trust store. The broker's host name is always checked against its certificate.
        cert_file: Client certificate (PEM) for brokers that ask for one (mutual TLS).
        key_file: The client certificate's private key (PEM, unencrypted).
    """

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def check(self) -> None:
        """Raise :class:`KafkaSecurityError` (one line: what is wrong, which setting fixes it) when
        the settings cannot work together or a file is missing."""
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"EVTWIN_KAFKA_SECURITY_PROTOCOL={self.protocol!r} is not one of "
                                     f"{', '.join(PROTOCOLS)}")
        if self.sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise KafkaSecurityError(f"EVTWIN_KAFKA_SASL_MECHANISM={self.sasl_mechanism!r} is not one "
                                         f"of {', '.join(SASL_MECHANISMS)}")
            if not self.sasl_username or not self.sasl_password:
                raise KafkaSecurityError(
                    f"{self.protocol} needs a user and a password: set EVTWIN_KAFKA_SASL_USERNAME and "
                    "EVTWIN_KAFKA_SASL_PASSWORD (or EVTWIN_KAFKA_SASL_PASSWORD_FILE)")
        files = {"EVTWIN_KAFKA_SSL_CA_FILE": self.ca_file, "EVTWIN_KAFKA_SSL_CERT_FILE": self.cert_file,
                 "EVTWIN_KAFKA_SSL_KEY_FILE": self.key_file}
        given = [name for name, path in files.items() if path is not None]
        if given and not self.tls:
            raise KafkaSecurityError(f"{', '.join(given)} given but EVTWIN_KAFKA_SECURITY_PROTOCOL is "
                                     f"{self.protocol}: set it to SSL or SASL_SSL to use TLS")
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSecurityError("a client certificate needs both EVTWIN_KAFKA_SSL_CERT_FILE and "
                                     "EVTWIN_KAFKA_SSL_KEY_FILE")
        for name, path in files.items():
            if path is not None and not Path(path).is_file():
                raise KafkaSecurityError(f"{name}={path}: no such file")
        try:
            self.ssl_context()  # the files are PEM, the key matches the certificate
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise KafkaSecurityError(f"{', '.join(given)}: cannot be used for TLS ({exc}); they must "
                                     "be PEM files, the key the certificate's, unencrypted") from exc

    def client_config(self) -> dict[str, Any]:
        """The librdkafka (confluent-kafka) properties; empty for PLAINTEXT."""
        if self.protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security.protocol": self.protocol}
        if self.sasl:
            config.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                           "sasl.password": self.sasl_password})
        if self.tls:
            config["ssl.endpoint.identification.algorithm"] = "https"
            if self.ca_file is not None:
                config["ssl.ca.location"] = str(self.ca_file)
            if self.cert_file is not None:
                config["ssl.certificate.location"] = str(self.cert_file)
                config["ssl.key.location"] = str(self.key_file)
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (for aiokafka) that verifies the brokers' certificates and names;
        ``None`` when the protocol has no TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


_security = KafkaSecurity()


def use_security(security: KafkaSecurity) -> None:
    """Make every client this process builds connect with ``security`` (checked first).

    Raises:
        KafkaSecurityError: the settings cannot work (see :meth:`KafkaSecurity.check`).
    """
    global _security
    security.check()
    _security = security


def security() -> KafkaSecurity:
    """The process's connection security (PLAINTEXT until :func:`use_security`)."""
    return _security


def client_config(bootstrap_servers: str, **config: Any) -> dict[str, Any]:
    """``config`` for a confluent-kafka client of ``bootstrap_servers``, with the process's
    security settings."""
    return {"bootstrap.servers": bootstrap_servers, **_security.client_config(), **config}


def _producer_config(bootstrap_servers: str, overrides: dict[str, Any]) -> dict[str, Any]:
    config = client_config(bootstrap_servers, **{
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "acks": "all",
        "queue.buffering.max.messages": 500000,
    })
    config.update(overrides)
    return config


def producer(bootstrap_servers: str, **overrides: Any) -> Producer:
    """A producer that batches: linger 5 ms, lz4, idempotence off (the embedded brokers differ in
    their support), acks=all."""
    return Producer(_producer_config(bootstrap_servers, overrides))


class CheckedProducer(Producer):
    """A producer (:func:`producer`'s configuration) whose :meth:`flush_delivered` says whether
    everything produced since the last call reached the broker.

    ``Producer.flush`` counts a record it gave up on as done: a record refused for good (an
    unknown partition or topic, a record too large for the broker, a denied write, a message
    time-out) leaves the queue as an error report, and ``flush`` returns 0 as if it was
    delivered. Here those reports (only failures are reported: nothing to serve per success)
    are collected and :meth:`flush_delivered` raises on them, so a caller that acknowledges its
    input after the flush does not acknowledge outputs that were lost.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__({**config, "delivery.report.only.error": True, "on_delivery": self._failed})
        self.failures: list[str] = []

    def _failed(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failures.append(f"{msg.topic()} partition {msg.partition()}: {err.str()}")

    def take_failures(self) -> list[str]:
        """The records given up on since the last call (``topic partition p: reason``), forgotten
        here. Serves pending delivery reports first."""
        self.poll(0)
        failed, self.failures = self.failures, []
        return failed

    def flush_delivered(self, timeout_s: float = 30.0) -> None:
        """Wait until every record produced is on the broker.

        Raises:
            KafkaDeliveryError: some were refused (the failures are forgotten: produce them
                again), or some were still queued after ``timeout_s``.
        """
        remaining = self.flush(timeout_s)
        failed = self.take_failures()
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise KafkaDeliveryError(f"{len(failed)} record(s) not delivered: {failed[0]}{more}")
        if remaining:
            raise KafkaDeliveryError(f"{remaining} record(s) not on the broker after {timeout_s:g} s")


def checked_producer(bootstrap_servers: str, **overrides: Any) -> CheckedProducer:
    """:func:`producer`, as a :class:`CheckedProducer`."""
    return CheckedProducer(_producer_config(bootstrap_servers, overrides))


def consumer(bootstrap_servers: str, group_id: str, **overrides: Any) -> Consumer:
    """A consumer with manual commits and a short session timeout (fast rebalances)."""
    config = client_config(bootstrap_servers, **{
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "fetch.wait.max.ms": 50,
    })
    config.update(overrides)
    return Consumer(config)


class IdleRest:
    """Rest an assigned consumer while its partitions have nothing new (a wrapper of ``consume``),
    for consumers that wait for rare records: the simulator's commands, the live view's alerts.

    noida-db answers every fetch at once — with nothing, when nothing is new — so librdkafka
    fetches back to back: an idle consumer of 12 partitions cost ~47 % of a core and the broker
    ~38 % answering it (measured; ``fetch.wait.max.ms``, ``fetch.min.bytes``,
    ``fetch.error.backoff.ms``, ``enable.partition.eof`` and ``queued.min.messages`` changed
    nothing). Paused partitions are not fetched.

    It pauses only on evidence: after an empty ``consume``, it asks the broker for the partitions'
    high watermarks and pauses when every partition is read to its end (the position it delivered
    up to, or the log start when it delivered nothing yet). While paused, calls return ``[]`` at
    once, and every ``rest_s`` it asks again; it resumes when a partition has records beyond that
    position. So a fetch that is slow to come back (a loaded machine) is never cut short, nothing
    is skipped, and records arrive at most ``rest_s`` (plus the caller's own interval) late.
    Pausing keeps librdkafka's position, so records fetched but purged by the pause are fetched
    again. For consumers assigned from the log start or from offsets they passed to ``assign``
    (``position`` starts there); not for subscriptions (a rebalance would lose the pause).
    A check waits at most ``timeout_s`` for the broker (a healthy one answers in milliseconds);
    without an answer it keeps fetching, as a consumer without rests would.
    """

    def __init__(self, consumer: Consumer, rest_s: float = 0.5, timeout_s: float = 0.5) -> None:
        self.consumer = consumer
        self.rest_s = rest_s
        self.timeout_s = timeout_s
        #: Next offset to deliver per (topic, partition); absent = the log start.
        self.position: dict[tuple[str, int], int] = {}
        self._paused: list[Any] = []
        self._check_at = 0.0
        #: Rests taken, and watermark checks made (each a ListOffsets round trip per partition).
        self.rests = 0
        self.checks = 0

    @property
    def resting(self) -> bool:
        return bool(self._paused)

    def _behind(self, partitions: list[Any]) -> bool:
        """Whether a partition has records beyond what was delivered (asks the broker)."""
        self.checks += 1
        for tp in partitions:
            try:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=self.timeout_s, cached=False)
            except KafkaException:
                return True  # no answer: keep fetching, as without a rest
            if high > max(self.position.get((tp.topic, tp.partition), -1), low):
                return True
        return False

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        now = time.monotonic()
        if self._paused:
            if now < self._check_at:
                return []
            if not self._behind(self._paused):
                self._check_at = now + self.rest_s
                return []
            self.consumer.resume(self._paused)
            self._paused = []
        messages: list[Any] = self.consumer.consume(num_messages=num_messages, timeout=timeout)
        for msg in messages:
            if msg.error() is None:
                self.position[(msg.topic(), msg.partition())] = msg.offset() + 1
        if not messages:
            assigned = self.consumer.assignment()
            if assigned and not self._behind(assigned):
                self.consumer.pause(assigned)
                self._paused = assigned
                self._check_at = time.monotonic() + self.rest_s
                self.rests += 1
        return messages


@dataclass(frozen=True)
class TopicState:
    """What the broker reports about one topic."""

    name: str
    partitions: int


def admin(bootstrap_servers: str, **overrides: Any) -> AdminClient:
    return AdminClient(client_config(bootstrap_servers, **overrides))


def list_topics(bootstrap_servers: str, timeout_s: float = 10.0) -> dict[str, TopicState]:
    """Return the topics on the broker (internal ``__`` topics excluded).

    Raises:
        KafkaAdminError: no answer in ``timeout_s``; when the broker refused the TLS handshake or
            the login, the message says so (librdkafka would otherwise only time out).
    """
    refused: list[str] = []

    def on_error(err: KafkaError) -> None:
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            refused.append(err.str())

    client = admin(bootstrap_servers, error_cb=on_error)
    try:
        meta = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        client.poll(0.2)  # librdkafka hands its connection errors to error_cb only here
        reason = f"{refused[-1]} (check the EVTWIN_KAFKA_SASL_*/SSL_* settings)" if refused else str(exc)
        raise KafkaAdminError(f"cannot list topics on {bootstrap_servers}: {reason}") from exc
    return {
        name: TopicState(name, len(t.partitions))
        for name, t in meta.topics.items()
        if not name.startswith("__") and t.error is None
    }


def ensure_topics(bootstrap_servers: str, specs: Iterable[Any], replication: int = 1,
                  timeout_s: float = 15.0) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet; return the names created.

    Idempotent: existing topics are left as they are (a partition count that differs from the
    spec is logged as a warning, never changed silently).
    """
    specs = list(specs)
    existing = list_topics(bootstrap_servers, timeout_s)
    for spec in specs:
        if spec.name in existing and existing[spec.name].partitions != spec.partitions:
            log.warning("topic %s has %d partitions, the spec says %d", spec.name,
                        existing[spec.name].partitions, spec.partitions)
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    client = admin(bootstrap_servers)
    futures = client.create_topics(
        [NewTopic(s.name, s.partitions, replication, config=s.config) for s in missing],
        operation_timeout=timeout_s, request_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaAdminError(f"cannot create topic {name}: {exc.args[0].str()}") from exc
    log.info("created topics: %s", ", ".join(sorted(created)))
    return created


__all__ = ["IdleRest", "KafkaSecurity", "TopicState", "admin", "client_config", "consumer", "ensure_topics", "list_topics",
           "producer", "security", "use_security"]
