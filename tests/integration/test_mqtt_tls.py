"""MQTT over TLS: the bridge's publisher, the ingest side's client and the API's health check
talk to a real broker (amqtt with a TLS listener and a certificate from a throwaway CA) through
``mqtts://…?ca_file=``; a client that does not trust that CA never connects."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from connectors.embedded.process import free_port
from connectors.mqtt_publisher import MqttPublisher, mqtt_endpoint
from tests.support.certs import make_ca_and_server_cert
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, Path]]]:
    certs = make_ca_and_server_cert(tmp_path_factory.mktemp("certs"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "connectors.embedded.amqtt_server", "--port", str(port),
                             "--certfile", str(certs["cert"]), "--keyfile", str(certs["key"])], cwd=REPO)
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1"):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)
    yield port, certs
    proc.terminate()
    proc.wait(10)


def _subscriber(url: str, topic: str) -> tuple[mqtt.Client, list[bytes], threading.Event]:
    got: list[bytes] = []
    arrived, subscribed = threading.Event(), threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tls-sub-{time.time_ns()}")
    endpoint = mqtt_endpoint(url)
    endpoint.configure(client)
    client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, msg: (got.append(msg.payload), arrived.set())
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    assert subscribed.wait(10), "the TLS subscriber did not subscribe"
    return client, got, arrived


def test_alerts_and_state_go_over_tls_to_a_client_that_trusts_the_ca(tls_broker: tuple[int, dict[str, Path]]) -> None:
    """Both of the publisher's connections: alerts through paho, state through its own stream."""
    port, certs = tls_broker
    url = f"mqtts://127.0.0.1:{port}?ca_file={certs['ca']}"
    sub, got, _ = _subscriber(url, "ev/battery/TLS_0001/#")
    try:
        with MqttPublisher(url, client_id="tls-bridge") as publisher:
            assert publisher.wait_connected(10)
            publisher.publish_alert("TLS_0001", {"rule": "overheat", "status": "OPENED"})
            publisher.publish_state("TLS_0001", {"soc": 42.0})
            assert publisher.flush(10)
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        expected = [{"rule": "overheat", "status": "OPENED"}, {"soc": 42.0}]
        assert sorted((json.loads(g) for g in got), key=str) == sorted(expected, key=str)
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_a_broker_certificate_from_another_ca_is_refused(tls_broker: tuple[int, dict[str, Path]]) -> None:
    port, certs = tls_broker
    with MqttPublisher(f"mqtts://127.0.0.1:{port}?ca_file={certs['other_ca']}", client_id="tls-untrusting",
                       reconnect_delay_s=(1, 1)) as publisher:
        assert not publisher.wait_connected(3)  # the handshake fails: nothing is sent in the clear
    plain = MqttPublisher(f"mqtt://127.0.0.1:{port}", client_id="tls-plain", reconnect_delay_s=(1, 1))
    with plain:
        assert not plain.wait_connected(3)  # plain MQTT to a TLS listener gets no CONNACK


def test_the_api_health_check_verifies_the_broker_certificate(tls_broker: tuple[int, dict[str, Path]]) -> None:
    from streams.api.routes_live import _mqtt

    port, certs = tls_broker
    assert asyncio.run(_mqtt(f"mqtts://127.0.0.1:{port}?ca_file={certs['ca']}")) == \
        f"127.0.0.1:{port} accepts TLS connections"
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(_mqtt(f"mqtts://127.0.0.1:{port}?ca_file={certs['other_ca']}"))
