"""The Faust app of every stream process: configured from the settings, run until a signal.

:func:`make_app` builds a :class:`streams.runtime.batching.TwinApp` (Faust with batch delivery);
:func:`run_app` runs it under Faust's worker, which stops it cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from faust.types.auth import CredentialsT

from connectors import kafka
from connectors.kafka import KafkaSecurity
from streams.runtime.batching import TwinApp
from streams.runtime.health import HEALTH


def make_app(settings: Any, bootstrap: str, app_id: str, batch_size: int) -> TwinApp:
    """A :class:`TwinApp` configured from our settings.

    Args:
        settings: The process's :class:`streams.settings.Settings`.
        bootstrap: Kafka bootstrap servers.
        app_id: Faust app id = consumer group of the replicas.
        batch_size: Records per fetch to aim for.
    """
    embedded = settings.kafka_bootstrap_servers is None
    datadir = Path(settings.state_dir) / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = TwinApp(
        app_id,
        broker=[f"kafka://{h}" for h in bootstrap.split(",")],
        broker_credentials=faust_credentials(kafka.security()),
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        # The embedded broker runs on this machine: a short session timeout makes a dead
        # replica's partitions move within seconds.
        broker_session_timeout=6.0 if embedded else 30.0,
        # A member that dies while the group rebalances holds the group up to this long.
        broker_rebalance_timeout=10.0 if embedded else 60.0,
        broker_heartbeat_interval=1.0 if embedded else 3.0,
        broker_commit_interval=1.0,
        broker_max_poll_records=max(batch_size * 2, 1000),
        stream_buffer_maxsize=max(batch_size * 4, 4096),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
    )
    _report_health(app)
    return app


def faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """The process's Kafka security as Faust (aiokafka) credentials: the same protocol, SASL user
    and TLS trust as the confluent-kafka clients; ``None`` for PLAINTEXT."""
    if security.protocol == "PLAINTEXT":
        return None
    if security.sasl:
        return faust.SASLCredentials(username=security.sasl_username, password=security.sasl_password,
                                     mechanism=security.sasl_mechanism, ssl_context=security.ssl_context())
    return faust.SSLCredentials(security.ssl_context())


def _report_health(app: TwinApp) -> None:
    """Ready (/readyz) once the app has joined its consumer group (its streams resumed after the
    first rebalance, with or without partitions); live (/healthz) while its event loop turns."""
    HEALTH.expect("group")

    async def joined(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        HEALTH.met("group")

    async def beat() -> None:
        HEALTH.beat()

    app.on_rebalance_complete.connect(joined)
    app.timer(interval=5.0, name="health.beat")(beat)


def raw_topic(app: TwinApp, name: str, partitions: int) -> Any:
    """A topic of raw bytes (our codecs decode)."""
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)


async def export_lag(app: TwinApp) -> None:
    """Set ``evtwin_consumer_lag`` for every partition this replica owns (end offset − position;
    correct on brokers that report end offsets correctly: noida-db, Redpanda, Kafka)."""
    from streams.runtime.metrics import CONSUMER_LAG

    exported = set()
    for tp in app.consumer.assignment():
        position = await app.consumer.position(tp)
        high = app.consumer.highwater(tp)
        if position is not None and high is not None:
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - position))
            exported.add((tp.topic, str(tp.partition)))
    # A partition that moved to another replica is reported there: drop its last value here, or
    # the summed lag (what the autoscaler reads) would count it twice, forever.
    for topic, partition in _lag_exported - exported:
        CONSUMER_LAG.remove(topic, partition)
    _lag_exported.clear()
    _lag_exported.update(exported)


_lag_exported: set[tuple[str, str]] = set()


def run_app(app: TwinApp, log_level: str) -> None:
    """Run ``app`` until SIGINT/SIGTERM (Faust's worker stops it cleanly)."""
    faust.Worker(app, loglevel=log_level.lower(), quiet=True,
                 redirect_stdouts=False).execute_from_commandline()


__all__ = ["export_lag", "faust_credentials", "make_app", "raw_topic", "run_app"]
