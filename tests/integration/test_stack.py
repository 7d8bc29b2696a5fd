"""Each embedded service starts and answers; the topics exist as the spec says."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from connectors import ServiceStartError
from connectors.embedded.stack import EmbeddedStack
from connectors.endpoints import Endpoints, resolve_endpoints
from connectors.kafka import list_topics
from streams.topics import topic_specs
from tests.support.stack_settings import free_port_settings


def test_broker_answers_metadata(stack) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    meta = AdminClient({"bootstrap.servers": ep.kafka_bootstrap_servers}).list_topics(timeout=10)
    assert meta.brokers and all(b.host == "127.0.0.1" for b in meta.brokers.values())


def test_postgres_answers_select_1(stack) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    assert ep.database_url.startswith("postgresql://evtwin:")
    with psycopg.connect(ep.database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_mqtt_publish_subscribe_round_trip(stack) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    host, port = ep.mqtt_url.removeprefix("mqtt://").split(":")
    got: list[bytes] = []
    arrived = threading.Event()
    topic = f"ev/test/{uuid.uuid4().hex}"
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, msg: (got.append(msg.payload), arrived.set())
    sub.connect(host, int(port))
    sub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect(host, int(port))
        pub.loop_start()
        pub.publish(topic, b"hello twin", qos=1).wait_for_publish(10)
        pub.loop_stop()
        pub.disconnect()
        assert arrived.wait(10)
        assert got == [b"hello twin"]
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_topics_exist_with_the_spec_partitions(stack) -> None:  # type: ignore[no-untyped-def]
    settings, ep = stack
    present = list_topics(ep.kafka_bootstrap_servers)
    for spec in topic_specs(settings.topic_partitions):
        assert present[spec.name].partitions == spec.partitions == 12


def test_stack_json_names_every_service(stack) -> None:  # type: ignore[no-untyped-def]
    settings, ep = stack
    data = json.loads(settings.stack_file.read_text())
    for key in ("kafka_bootstrap_servers", "database_url", "mqtt_url", "schema_registry_url",
                "mlflow_tracking_uri"):
        assert key in data
    assert data["mqtt_url"].startswith("mqtt://127.0.0.1:")
    assert data["mlflow_tracking_uri"].startswith("sqlite:///")
    assert oct(settings.stack_file.stat().st_mode & 0o777) == "0o600"  # it holds a password
    assert resolve_endpoints(settings).kafka_bootstrap_servers == ep.kafka_bootstrap_servers


def test_tansu_broker_also_works(state_dir: Path) -> None:
    settings = free_port_settings(state_dir, kafka_broker="tansu", database_url="postgresql://unused",
                                  mqtt_url="mqtt://unused:1")
    with EmbeddedStack(settings) as ep:
        from connectors.kafka import ensure_topics

        created = ensure_topics(ep.kafka_bootstrap_servers, topic_specs(3))
        assert len(created) == len(topic_specs())
        assert {t.partitions for t in list_topics(ep.kafka_bootstrap_servers).values()} == {3}


def test_a_set_url_is_used_instead_of_an_embedded_service(stack, state_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _, running = stack
    settings = free_port_settings(state_dir, kafka_bootstrap_servers=running.kafka_bootstrap_servers,
                                  database_url=running.database_url, mqtt_url=running.mqtt_url)
    embedded = EmbeddedStack(settings)
    with embedded as ep:
        assert embedded.services == []  # nothing started: every URL was given
        assert ep.kafka_bootstrap_servers == running.kafka_bootstrap_servers
        assert Endpoints.read(settings.stack_file).database_url == running.database_url


def test_port_in_use_is_one_clear_error(stack, state_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _, running = stack
    busy = int(running.kafka_bootstrap_servers.rsplit(":", 1)[1])
    settings = free_port_settings(state_dir, embedded_kafka_port=busy)
    with pytest.raises(ServiceStartError, match=rf"port {busy} on 127.0.0.1 is in use.*EVTWIN_EMBEDDED_KAFKA_PORT"):
        EmbeddedStack(settings).start()


def test_unwritable_state_dir_is_one_clear_error(state_dir: Path) -> None:
    blocker = state_dir / "file"
    blocker.write_text("not a directory")
    settings = free_port_settings(blocker / "state")
    with pytest.raises(ServiceStartError, match="not writable"):
        EmbeddedStack(settings).start()


def test_missing_binary_is_one_clear_error(state_dir: Path) -> None:
    settings = free_port_settings(state_dir, postgres_bin_dir=state_dir / "nowhere",
                                  kafka_bootstrap_servers="127.0.0.1:1", mqtt_url="mqtt://x:1")
    with pytest.raises(ServiceStartError, match="initdb is missing.*EVTWIN_POSTGRES_BIN_DIR"):
        EmbeddedStack(settings).start()


def test_second_stack_in_the_same_state_dir_is_refused(stack) -> None:  # type: ignore[no-untyped-def]
    settings, _ = stack
    with pytest.raises(ServiceStartError, match="already running"):
        EmbeddedStack(settings).start()


def test_noida_snapshot_thread_runs_at_idle_priority(tmp_path: Path) -> None:
    """noida-db re-saves its whole state in a loop; at normal priority that thread took most of
    the broker's 0.4 of a core in `bench e2e`, from the workers it serves (see idle_autosave)."""
    import os

    from connectors.embedded.kafka_broker import KafkaBroker, idle_autosave

    broker = KafkaBroker("noida", tmp_path / "kafka", 0)
    broker.start()
    try:
        broker.wait_ready(30)
        assert broker.proc is not None and broker.proc.pid is not None
        tasks = Path(f"/proc/{broker.proc.pid}/task")
        policies = {(tasks / t.name / "comm").read_text().strip(): os.sched_getscheduler(int(t.name))
                    for t in tasks.iterdir()}
        assert policies.pop("autosave") == os.SCHED_IDLE
        assert policies and set(policies.values()) == {os.SCHED_OTHER}  # the serving threads: as before
        (tid,) = idle_autosave(broker.proc.pid, idle=False)  # what stop() does first: its last save
        assert os.sched_getscheduler(tid) == os.SCHED_OTHER
    finally:
        broker.stop()
